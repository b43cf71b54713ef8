"""Derive every projection again from the event log.

Run it with workers stopped: projections are rebuilt in place inside one
transaction, so readers see either the old rows or the new ones. The list of
projections is the ground layer's registry, filled by each app's
``AppConfig.ready()``: an app that keeps rows registers their rebuild there.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from runs.ground import projectors


class Command(BaseCommand):
    help = "Rebuild every projection (the tables pages read) from the events alone."

    def handle(self, *args, **options):
        with transaction.atomic():
            for name, rebuild in projectors.rebuilds():
                count = rebuild()
                self.stdout.write(f"{name}: {count} rows rebuilt from events")
