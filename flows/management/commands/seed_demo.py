"""Demo users, teams and inventory for `make run`. Safe to run repeatedly."""

import datetime as dt
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from config.roles import ADMIN, OPERATOR, REVIEWER
from flows import services
from flows.models import Flow, Team
from runs import clock

DEMO_USERS = [("admin", ADMIN), ("operator", OPERATOR), ("reviewer", REVIEWER)]

ORDER_RUNBOOK = """\
## When a run fails
1. Open the run and read the failed step's error.
2. If the payment succeeded but inventory failed, the saga refunds the charge:
   confirm the refund in the payments dashboard.
3. Replay the dead letter once the inventory API is healthy.

## Contacts
- Payments on-call: #payments
- Warehouse: #warehouse-ops
"""


# `make run` starts the payments API on this port and puts it (only) on the
# worker's outbound allowlist.
DEMO_PAYMENTS_URL = f"http://127.0.0.1:{os.environ.get('LEDGERFLOW_DEMO_PAYMENTS_PORT', '8765')}"


def order_graph() -> dict:
    """Check the order, charge it through the demo payments API (started by
    `make run`), let it settle, confirm. Start it with {"order_id": "A-1",
    "amount": 42}."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}},
            {"id": "check", "type": "branch", "position": {"x": 200, "y": 0},
             "config": {"condition": "{{ trigger.amount is number and trigger.amount > 0 }}"}},
            {"id": "reject", "type": "transform", "position": {"x": 400, "y": 120},
             "config": {"fields": {"rejected": "amount must be a positive number"}}},
            {"id": "charge", "type": "http.request", "position": {"x": 400, "y": 0},
             "config": {"method": "POST", "url": DEMO_PAYMENTS_URL + "/charges",
                        "json_body": {"order_id": "{{ trigger.order_id }}",
                                      "amount": "{{ trigger.amount }}"},
                        "honours_idempotency_key": True, "timeout_seconds": 10}},
            {"id": "settle", "type": "delay", "position": {"x": 600, "y": 0},
             "config": {"seconds": 3}},
            {"id": "confirm", "type": "transform", "position": {"x": 800, "y": 0},
             "config": {"fields": {"order_id": "{{ trigger.order_id }}",
                                   "charge_id": "{{ steps.charge.output.body.id }}"}}},
        ],
        "edges": [
            {"from": "start", "to": "check"},
            {"from": "check", "from_port": "true", "to": "charge"},
            {"from": "check", "from_port": "false", "to": "reject"},
            {"from": "charge", "to": "settle"},
            {"from": "settle", "to": "confirm"},
        ],
    }  # fmt: skip


class Command(BaseCommand):
    help = "Create the demo users (printing their passwords), teams and inventory."

    def handle(self, *args, **options):
        passwords = self._users()
        self.stdout.write(f"Demo users (passwords kept in {self._password_file()}):")
        for username, password in passwords.items():
            self.stdout.write(f"  {username:<10} {password}")
        if not Flow.objects.exists():
            self._inventory()
            self.stdout.write(f"Demo inventory: {Flow.objects.count()} automations.")

    def _password_file(self):
        return settings.DATA_DIR / "demo-passwords.txt"

    def _users(self) -> dict[str, str]:
        # Passwords are random per data directory and kept beside the
        # database, so every `make run` can print them again.
        path = self._password_file()
        known = {}
        if path.exists():
            for line in path.read_text().splitlines():
                name, _, password = line.partition(" ")
                known[name] = password
        User = get_user_model()
        for username, role in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created or username not in known:
                known[username] = secrets.token_urlsafe(9)
                user.set_password(known[username])
                user.save()
            user.groups.add(Group.objects.get(name=role))
        path.write_text("".join(f"{n} {p}\n" for n, p in known.items()))
        path.chmod(0o600)
        return {name: known[name] for name, _ in DEMO_USERS}

    @transaction.atomic
    def _inventory(self) -> None:
        User = get_user_model()
        admin = User.objects.get(username="admin")
        operator = User.objects.get(username="operator")
        former, _ = User.objects.get_or_create(username="dana", defaults={"is_active": False})
        former.set_unusable_password()
        former.is_active = False
        former.save()
        payments, _ = Team.objects.get_or_create(
            name="Payments", defaults={"restricts_edits": True}
        )
        payments.members.add(operator)
        growth, _ = Team.objects.get_or_create(name="Growth")

        def make(owner, **fields):
            base = {
                "kind": "ledgerflow",
                "external_platform": "",
                "external_url": "",
                "purpose": "",
                "team": None,
                "criticality": "medium",
                "runbook": "",
                "failure_mode": "",
                "review_cadence_days": 90,
                "tags": [],
                "external_systems": [],
                "owner": owner,
            }
            base.update(fields)
            return services.flow_create(actor=admin, data=base)

        order = make(
            operator,
            name="Order fulfilment",
            slug="order-fulfilment",
            purpose="Charge the card, reserve stock and confirm the order; refund if stock fails.",
            team=payments,
            criticality="critical",
            runbook=ORDER_RUNBOOK,
            failure_mode="Customers are charged for orders that never ship, or orders ship unpaid.",
            tags=["orders", "saga"],
            external_systems=["Payments API", "Inventory API"],
        )
        services.flow_record_review(flow=order, actor=operator, note="Initial review.")
        services.flow_save_draft(flow=order, actor=operator, graph=order_graph())
        services.flow_publish(flow=order, actor=operator, note="Demo version")
        services.flow_transition(flow=order, actor=operator, action="activate")
        make(
            operator,
            name="Refund approvals",
            slug="refund-approvals",
            purpose="Refunds over 500 EUR wait for a reviewer's approval.",
            team=payments,
            criticality="high",
            runbook="Check the approval inbox backlog; escalate to finance leads.",
            tags=["approvals"],
            external_systems=["Payments API"],
        )
        make(
            None,
            name="Nightly CRM sync",
            slug="nightly-crm-sync",
            kind="external",
            external_platform="cron on ops-1",
            external_url="https://ops.example.com/cron/crm-sync",
            purpose="Copies yesterday's customers into the CRM at 02:00.",
            team=growth,
            criticality="medium",
            external_systems=["CRM"],
            tags=["sync"],
        )
        zap = make(
            operator,
            name="Lead routing zap",
            slug="lead-routing-zap",
            kind="external",
            external_platform="Zapier",
            external_url="https://zapier.example.com/zaps/lead-routing",
            purpose="Sends new web leads to the right sales rep.",
            team=growth,
            criticality="low",
            runbook="Re-enable the zap in Zapier; leads received meanwhile are in the form tool.",
            failure_mode="Leads wait unanswered until someone notices.",
            review_cadence_days=30,
            external_systems=["Zapier", "CRM"],
        )
        services.flow_record_review(
            flow=zap, actor=operator, reviewed_on=clock.now().date() - dt.timedelta(days=75)
        )
        services.flow_transition(flow=zap, actor=operator, action="activate")
        make(
            former,
            name="Invoice reminders",
            slug="invoice-reminders",
            purpose="Emails customers whose invoices are 7 days overdue.",
            criticality="medium",
            runbook="Resend from the billing tool.",
            failure_mode="Cash comes in later; nobody is told.",
            external_systems=["Billing", "Email"],
        )
