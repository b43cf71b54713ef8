"""Demo users, teams and inventory for `make run`. Safe to run repeatedly."""

import datetime as dt
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from approvals.models import BusinessCalendar
from config import demo
from config.roles import ADMIN, OPERATOR, REVIEWER
from flows import services
from flows.models import Flow, Team
from flows.teams import team_create
from runs import driver
from runs.ground import clock
from runs.models import Run

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
REFUND_FAILURE_MODE = "Customers wait for refunds nobody decides; complaints reach support."


FINANCE_SIGN_OFF_ABOVE = 1000


def approval_graph() -> dict:
    """A refund waits for a reviewer: 4 business hours, reminded an hour
    before, then escalated to the finance leads for 8 more, then rejected.
    Above 1,000 EUR a finance lead signs off too, and never the person who
    approved the review (``distinct_deciders``), nor whoever started the run.
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
                 "distinct_deciders": True,
             }},
            {"id": "size", "type": "branch", "position": {"x": 400, "y": 0},
             "config": {"condition":
                        f"{{{{ (trigger.amount | float) > {FINANCE_SIGN_OFF_ABOVE} }}}}"}},
            {"id": "finance", "type": "approval", "position": {"x": 600, "y": -120},
             "config": {
                 "title": "Finance sign-off: refund {{ trigger.amount }} EUR "
                          "for order {{ trigger.order_id }}",
                 "description": "Approved by {{ steps.review.output.decided_by }}; "
                                "refunds above 1,000 EUR need a second person.",
                 "assignee_group": SUPERVISORS,
                 "shows": {"order": "{{ trigger.order_id }}", "amount": "{{ trigger.amount }}",
                           "reviewed_by": "{{ steps.review.output.decided_by }}"},
                 "separation_of_duties": True,
                 "distinct_deciders": True,
             }},
            {"id": "refund", "type": "transform", "position": {"x": 800, "y": 0},
             "config": {"fields": {"refunded": "{{ trigger.amount }}",
                                   "as": "{{ steps.review.output.fields.refund_kind }}",
                                   "approved_by": "{{ steps.review.output.decided_by }}"}}},
            {"id": "decline", "type": "transform", "position": {"x": 800, "y": 120},
             "config": {"fields": {"declined": "{{ steps.review.output.comment }}"}}},
        ],
        "edges": [
            {"from": "start", "to": "review"},
            {"from": "review", "from_port": "approved", "to": "size"},
            {"from": "size", "from_port": "false", "to": "refund"},
            {"from": "size", "from_port": "true", "to": "finance"},
            {"from": "finance", "from_port": "approved", "to": "refund"},
            {"from": "review", "from_port": "rejected", "to": "decline"},
            {"from": "finance", "from_port": "rejected", "to": "decline"},
        ],
    }  # fmt: skip


def _has_finance_sign_off(flow: Flow) -> bool:
    version = flow.versions.filter(number=flow.published_version).first()
    return bool(version) and any(n["id"] == "finance" for n in version.graph["nodes"])


def seed_approvals(*, actor, owner) -> Flow:
    """The demo approval flow ("Refund approvals"), its supervisor group and
    the reviewers' business hours. Publishes only when the flow has no
    version yet, so a second run changes nothing."""
    from approvals.calendars import calendar_save

    supervisors, _ = Group.objects.get_or_create(name=SUPERVISORS)
    weekdays = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    for group in (Group.objects.get(name=REVIEWER), supervisors):
        if not BusinessCalendar.objects.filter(group=group).exists():
            calendar_save(group=group, actor=actor, time_zone="Europe/Berlin",
                          opening_hours=weekdays,
                          holidays=["2026-12-24", "2026-12-25", "2026-12-26"])  # fmt: skip
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
                "failure_mode": REFUND_FAILURE_MODE, "review_cadence_days": 90,
                "tags": ["approvals"],
                "external_systems": ["Payments API"],
            },
        )  # fmt: skip
    if not flow.published_version or not _has_finance_sign_off(flow):
        services.flow_save_draft(flow=flow, actor=actor, graph=approval_graph())
        services.flow_publish(flow=flow, actor=actor, note="Demo approval flow")
        flow.refresh_from_db()
    if flow.status == "draft":
        # The README tells people to start it, and only active flows run.
        if not flow.failure_mode.strip():
            flow = services.flow_update(
                flow=flow, actor=actor, data={"failure_mode": REFUND_FAILURE_MODE}
            )
        flow = services.flow_transition(flow=flow, actor=actor, action="activate")
    return flow


ADDRESS_RUNBOOK = """\
## When a run dead-letters
The shop sent an incomplete address. Open the dead letter, read which field
is missing, then *edit input* with the corrected address and replay it, or
discard it with the ticket number if the order was cancelled.
"""
DEMO_CREDENTIAL = "payments-api-token"
CRM_CREDENTIAL = "demo-crm"
CRM_SYNC_SLUG = "nightly-crm-sync"
EPOCH = "1970-01-01T00:00:00Z"

CRM_RUNBOOK = """\
## When the sync fails
1. Open the run and read the failed step's error (a 401 the token refresh
   could not cure means the CRM client secret changed: update `demo-crm`).
2. Replay the dead letter: upserted customers are not written again, and an
   upsert is idempotent at the CRM anyway.
3. The next night's run starts from the last successful run's watermark, so
   nothing changed in between is lost.
"""


def crm_sync_graph(credential: str = CRM_CREDENTIAL) -> dict:
    """ "Nightly CRM sync": at 02:00 UTC, query the customers changed since
    the last successful run's watermark (``last_success``, recorded at the
    run's start), upsert each into the CRM's contacts by customer id (a loop:
    each upsert is a durable iteration, so a crash mid-loop repeats nothing
    that finished), then record the new watermark as the run's output."""
    since = f"{{{{ last_success.output.mark.since | default('{EPOCH}') }}}}"
    return {
        "nodes": [
            {"id": "nightly", "type": "trigger.schedule", "position": {"x": 0, "y": 0},
             "config": {"cron": "0 2 * * *", "timezone": "UTC", "catch_up": "run_late"}},
            {"id": "since", "type": "transform", "position": {"x": 200, "y": 0},
             "config": {"fields": {"since": since}}},
            {"id": "changed", "type": "crm", "position": {"x": 400, "y": 0},
             "config": {"credential": credential, "operation": "query", "max_records": 1000,
                        "soql": "SELECT Id, Email, Name, LastModifiedDate FROM Customer "
                                "WHERE LastModifiedDate > '{{ steps.since.output.since }}' "
                                "ORDER BY LastModifiedDate"},
             "retry": {"max_attempts": 5}},
            {"id": "upsert_each", "type": "loop", "position": {"x": 600, "y": 0},
             "config": {"items": "{{ steps.changed.output.records }}", "batch_size": 2,
                        "body": {"type": "crm", "config": {
                            "credential": credential, "operation": "upsert",
                            "object_type": "Contact", "external_id_field": "Customer_Id__c",
                            "external_id": "{{ item.Id }}",
                            "fields": {"Email": "{{ item.Email }}", "Name": "{{ item.Name }}",
                                       "Source_Modified__c": "{{ item.LastModifiedDate }}"}}}},
             "retry": {"max_attempts": 5}},
            {"id": "mark", "type": "transform", "position": {"x": 800, "y": 0},
             "config": {"fields": {
                 "since": "{{ (steps.changed.output.records | map(attribute='LastModifiedDate')"
                          " | list | max) if steps.changed.output.records"
                          " else steps.since.output.since }}",
                 "synced": "{{ steps.upsert_each.output.count }}"}}},
        ],
        "edges": [
            {"from": "nightly", "to": "since"},
            {"from": "since", "to": "changed"},
            {"from": "changed", "to": "upsert_each"},
            {"from": "upsert_each", "to": "mark"},
        ],
    }  # fmt: skip


def seed_crm_sync(*, actor, owner, crm_url: str | None = None):
    """The fake CRM's credential and the "Nightly CRM sync" flow, published
    and active; nothing when they exist. A data directory seeded before the
    sync was a flow keeps its inventory entry as it is."""
    from connectors.credentials import store as credentials
    from fakeapi.crm import CLIENT_ID, CLIENT_SECRET

    crm_url = crm_url or demo.crm_url(settings.DATA_DIR)
    if not credentials.Credential.objects.filter(name=CRM_CREDENTIAL).exists():
        credentials.credential_create(
            actor=actor, name=CRM_CREDENTIAL, type="crm_oauth",
            fields={"instance_url": crm_url, "token_url": f"{crm_url}/services/oauth2/token",
                    "client_id": CLIENT_ID},
            secrets={"client_secret": CLIENT_SECRET},
            allowed_hosts=[crm_url.split("://", 1)[1]],
        )  # fmt: skip
    flow = Flow.objects.filter(slug=CRM_SYNC_SLUG).first()
    if flow is not None:
        return flow
    growth = Team.objects.filter(name="Growth").first() or team_create(name="Growth", actor=actor)
    flow = services.flow_create(actor=actor, data={
        "name": "Nightly CRM sync", "slug": CRM_SYNC_SLUG, "kind": "ledgerflow",
        "external_platform": "", "external_url": "",
        "purpose": "Copies the customers changed since the last successful sync into the CRM "
                   "at 02:00.",
        "owner": owner, "team": growth, "criticality": "medium", "runbook": CRM_RUNBOOK,
        "failure_mode": "Sales works from stale contacts; changed customers reach the CRM a "
                        "night late.",
        "review_cadence_days": 90, "tags": ["sync"], "external_systems": ["CRM"],
    })  # fmt: skip
    services.flow_save_draft(flow=flow, actor=actor, graph=crm_sync_graph())
    services.flow_publish(flow=flow, actor=actor, note="Demo version")
    return services.flow_transition(flow=flow, actor=actor, action="activate")


def address_graph() -> dict:
    """Normalise a customer's postal address before an order ships; pure
    steps only, so it runs without the worker or the demo API.
    Start it with {"customer": "C-1", "address": {"postcode": "10115 berlin"}}."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}},
            {"id": "normalise", "type": "transform", "position": {"x": 200, "y": 0},
             "config": {"fields": {
                 "customer": "{{ trigger.customer }}",
                 "postcode": "{{ trigger.address.postcode | upper }}",
                 "country": "{{ trigger.address.country | default('DE') }}"}}},
        ],
        "edges": [{"from": "start", "to": "normalise"}],
    }  # fmt: skip


def seed_credential(*, actor) -> bool:
    """A bearer token for the demo payments API; False if it exists."""
    from connectors.credentials import store as credentials

    if credentials.Credential.objects.filter(name=DEMO_CREDENTIAL).exists():
        return False
    credentials.credential_create(
        actor=actor, name=DEMO_CREDENTIAL, type="bearer", fields={},
        secrets={"token": secrets.token_urlsafe(24)},
    )  # fmt: skip
    return True


def seed_runs(*, actor, owner) -> dict[str, int]:
    """Real runs through the engine (their steps are pure or wait for a
    person, so they need no worker): one that succeeded, one dead-lettered
    and one waiting on an approval. Only when there are no runs yet."""
    if Run.objects.exists():
        return {}
    flow = Flow.objects.filter(slug="address-normalisation").first()
    if flow is None:
        flow = services.flow_create(actor=actor, data={
            "name": "Address normalisation", "slug": "address-normalisation",
            "kind": "ledgerflow", "external_platform": "", "external_url": "",
            "purpose": "Normalises a customer's postal address before an order ships.",
            "owner": owner, "team": None, "criticality": "low", "runbook": ADDRESS_RUNBOOK,
            "failure_mode": "Parcels go to addresses the carrier cannot read and come back.",
            "review_cadence_days": 180, "tags": ["orders"], "external_systems": [],
        })  # fmt: skip
        services.flow_save_draft(flow=flow, actor=actor, graph=address_graph())
        services.flow_publish(flow=flow, actor=actor, note="Demo version")
        flow = services.flow_transition(flow=flow, actor=actor, action="activate")
    who = f"user:{owner.username}"
    good = {"customer": "C-1", "address": {"postcode": "10115 berlin", "country": "DE"}}
    return {
        "succeeded": driver.start_run(flow=flow, input=good, actor=who).pk,
        # No address: the step fails for good and waits as a dead letter.
        "dead-lettered": driver.start_run(flow=flow, input={"customer": "C-2"}, actor=who).pk,
        "waiting on an approval": driver.start_run(
            flow=Flow.objects.get(slug="refund-approvals"),
            actor=who,
            input={"order_id": "A-7", "amount": 640, "reason": "arrived broken"},
        ).pk,
    }


class Command(BaseCommand):
    help = "Create the demo users (printing their passwords), teams and inventory."

    def handle(self, *args, **options):
        if not settings.LEDGERFLOW_DEMO:
            # The demo flows name the demo connectors, registered only then.
            raise CommandError("seed_demo needs the demo connectors: set LEDGERFLOW_DEMO=1")
        passwords = self._users()
        self.stdout.write(f"Demo users (passwords kept in {self._password_file()}):")
        for username, password in passwords.items():
            self.stdout.write(f"  {username:<10} {password}")
        if not Flow.objects.exists():
            self._inventory()
            self.stdout.write(f"Demo inventory: {Flow.objects.count()} automations.")
        self._approvals()
        self._crm_sync()
        self._examples()

    @transaction.atomic
    def _examples(self) -> None:
        """A credential and a few real runs, so every page has something to
        show on a first visit. Only into a data directory that has none."""
        User = get_user_model()
        admin, operator = User.objects.get(username="admin"), User.objects.get(username="operator")
        if seed_credential(actor=admin):
            self.stdout.write(f"Demo credential: {DEMO_CREDENTIAL}.")
        runs = seed_runs(actor=admin, owner=operator)
        if runs:
            self.stdout.write("Demo runs: " + ", ".join(f"{k} {v}" for k, v in runs.items()) + ".")

    @transaction.atomic
    def _crm_sync(self) -> None:
        User = get_user_model()
        operator = User.objects.get(username="operator")
        flow = seed_crm_sync(actor=User.objects.get(username="admin"), owner=operator)
        where = demo.crm_url(settings.DATA_DIR)
        self.stdout.write(f"Demo CRM sync: {flow.name} (/flows/{flow.slug}/), against {where}.")

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
        payments = Team.objects.filter(name="Payments").first() or team_create(
            name="Payments", actor=admin, restricts_edits=True, members=[operator]
        )
        growth = Team.objects.filter(name="Growth").first() or team_create(
            name="Growth", actor=admin
        )

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
            failure_mode=REFUND_FAILURE_MODE,
            tags=["approvals"],
            external_systems=["Payments API"],
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
