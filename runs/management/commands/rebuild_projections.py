"""Derive every projection again from the event log.

Run it with workers stopped: projections are rebuilt in place inside one
transaction, so readers see either the old rows or the new ones.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from approvals import projection as approval_projection
from connectors.credentials import store as credentials
from connectors.outbound import breakers
from connectors.triggers import projection as trigger_projection
from flows import projection as flow_projection
from runs import projection as run_projection

# Each later projection (runs, steps, approval tasks, dead letters) adds its
# rebuild here.
PROJECTIONS = [
    # Before flows: a flow's rebuilt team must exist to be kept.
    ("teams", flow_projection.rebuild_teams),
    ("flows", flow_projection.rebuild),
    ("runs", run_projection.rebuild),
    ("approval tasks", approval_projection.rebuild),
    ("business calendars", approval_projection.rebuild_calendars),
    ("breakers", breakers.rebuild),
    ("credentials", credentials.rebuild),
    ("triggers", trigger_projection.rebuild),
]


class Command(BaseCommand):
    help = "Rebuild every projection (the tables pages read) from the events alone."

    def handle(self, *args, **options):
        with transaction.atomic():
            for name, rebuild in PROJECTIONS:
                count = rebuild()
                self.stdout.write(f"{name}: {count} rows rebuilt from events")
