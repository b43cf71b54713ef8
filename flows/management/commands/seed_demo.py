"""Demo users, teams and inventory for `make run`. Safe to run repeatedly."""

import datetime as dt
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from config import demo
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


def order_graph(base_url: str | None = None) -> dict:
    """The "Order fulfilment" saga against the demo payments and inventory
    API (started by `make run`): check the order, charge it, reserve the
    stock, confirm. If the reservation fails for good (out of stock, or the
    inventory API down through every retry), the run fails at once and the
    charge is refunded (the payments connector's own undo).
    Start it with {"order_id": "A-1", "amount": 42, "sku": "BOOK-1"}.

    The API's URL is frozen into the published version: by default the port
    `make run` starts the API on (and puts, alone, on the worker's outbound
    allowlist), chosen once per data directory (config/demo.py)."""
    base_url = base_url or demo.payments_url(settings.DATA_DIR)
    return {
        "nodes": [
            {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}},
            {"id": "check", "type": "branch", "position": {"x": 200, "y": 0},
             "config": {"condition": "{{ trigger.amount is number and trigger.amount > 0 }}"}},
            {"id": "reject", "type": "transform", "position": {"x": 400, "y": 120},
             "config": {"fields": {"rejected": "amount must be a positive number"}}},
            {"id": "charge", "type": "payments.charge", "position": {"x": 400, "y": 0},
             "config": {"base_url": base_url, "order_id": "{{ trigger.order_id }}",
                        "amount": "{{ trigger.amount }}"},
             "compensation": "default"},
            {"id": "reserve", "type": "inventory.reserve", "position": {"x": 600, "y": 0},
             "config": {"base_url": base_url, "order_id": "{{ trigger.order_id }}",
                        "sku": "{{ trigger.sku | default('BOOK-1') }}", "quantity": 1},
             "retry": {"max_attempts": 3}, "on_failure": "fail_run",
             "compensation": "default"},
            {"id": "confirm", "type": "transform", "position": {"x": 800, "y": 0},
             "config": {"fields": {"order_id": "{{ trigger.order_id }}",
                                   "charge_id": "{{ steps.charge.output.charge_id }}",
                                   "reservation_id": "{{ steps.reserve.output.reservation_id }}"}}},
        ],
        "edges": [
            {"from": "start", "to": "check"},
            {"from": "check", "from_port": "true", "to": "charge"},
            {"from": "check", "from_port": "false", "to": "reject"},
            {"from": "charge", "to": "reserve"},
            {"from": "reserve", "to": "confirm"},
        ],
    }  # fmt: skip


SUPERVISORS = "Finance leads"


def approval_graph() -> dict:
    """A refund waits for a reviewer: 4 business hours, reminded an hour
    before, then escalated to the finance leads for 8 more, then rejected.
    Start it with {"order_id": "A-1", "amount": 640, "reason": "damaged"}."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}},
            {"id": "review", "type": "approval", "position": {"x": 200, "y": 0},
             "config": {
                 "title": "Refund {{ trigger.amount }} EUR for order {{ trigger.order_id }}",
                 "description": "The customer says: "
                                "{{ trigger.reason | default('no reason given') }}.",
                 "assignee_group": REVIEWER,
                 "shows": {"order": "{{ trigger.order_id }}", "amount": "{{ trigger.amount }}"},
                 "fields": [
                     {"name": "refund_kind", "label": "Refund as", "type": "choice",
                      "choices": ["card", "store credit"], "required": True},
                     {"name": "ticket", "label": "Support ticket", "type": "text"},
                 ],
                 "sla_hours": 4, "sla_clock": "business", "remind_before_hours": [1],
                 "escalation": {"group": SUPERVISORS, "hours": 8, "then": "auto_reject"},
                 "separation_of_duties": True,
             }},
            {"id": "refund", "type": "transform", "position": {"x": 400, "y": 0},
             "config": {"fields": {"refunded": "{{ trigger.amount }}",
                                   "as": "{{ steps.review.output.fields.refund_kind }}",
                                   "approved_by": "{{ steps.review.output.decided_by }}"}}},
            {"id": "decline", "type": "transform", "position": {"x": 400, "y": 120},
             "config": {"fields": {"declined": "{{ steps.review.output.comment }}"}}},
        ],
        "edges": [
            {"from": "start", "to": "review"},
            {"from": "review", "from_port": "approved", "to": "refund"},
            {"from": "review", "from_port": "rejected", "to": "decline"},
        ],
    }  # fmt: skip


def seed_approvals(*, actor, owner) -> Flow:
    """The demo approval flow ("Refund approvals"), its supervisor group and
    the reviewers' business hours. Publishes only when the flow has no
    version yet, so a second run changes nothing."""
    from approvals.models import BusinessCalendar

    supervisors, _ = Group.objects.get_or_create(name=SUPERVISORS)
    weekdays = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    for group in (Group.objects.get(name=REVIEWER), supervisors):
        BusinessCalendar.objects.get_or_create(
            group=group,
            defaults={"time_zone": "Europe/Berlin", "opening_hours": weekdays,
                      "holidays": ["2026-12-24", "2026-12-25", "2026-12-26"]},
        )  # fmt: skip
    flow = Flow.objects.filter(slug="refund-approvals").first()
    if flow is None:
        flow = services.flow_create(
            actor=actor,
            data={
                "name": "Refund approvals", "slug": "refund-approvals", "kind": "ledgerflow",
                "external_platform": "", "external_url": "",
                "purpose": "Refunds over 500 EUR wait for a reviewer's approval.",
                "owner": owner, "team": None, "criticality": "high",
                "runbook": "Check the approval inbox backlog; escalate to finance leads.",
                "failure_mode": "", "review_cadence_days": 90, "tags": ["approvals"],
                "external_systems": ["Payments API"],
            },
        )  # fmt: skip
    if not flow.published_version:
        services.flow_save_draft(flow=flow, actor=actor, graph=approval_graph())
        services.flow_publish(flow=flow, actor=actor, note="Demo approval flow")
        flow.refresh_from_db()
    return flow


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
        self._approvals()

    @transaction.atomic
    def _approvals(self) -> None:
        User = get_user_model()
        # Addresses for the demo users, so approval notifications show up in
        # the console mail backend that `make run` uses.
        for username, _ in DEMO_USERS:
            User.objects.filter(username=username, email="").update(
                email=f"{username}@ledgerflow.example"
            )
        operator = User.objects.get(username="operator")
        flow = seed_approvals(actor=User.objects.get(username="admin"), owner=operator)
        self.stdout.write(f"Demo approval flow: {flow.name} (/flows/{flow.slug}/).")

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
