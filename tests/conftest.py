"""Personas with fixed roles, in the healthchecks manner: olga the operator,
rita the reviewer, adam the admin, and nora who has no role at all."""

import pytest
from django.contrib.auth.models import Group, User

from config.roles import ADMIN, OPERATOR, REVIEWER
from flows import services

PASSWORD = "correct-horse-battery"


def _user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def olga(db):
    return _user("olga", OPERATOR)


@pytest.fixture
def rita(db):
    return _user("rita", REVIEWER)


@pytest.fixture
def adam(db):
    return _user("adam", ADMIN)


@pytest.fixture
def nora(db):
    return _user("nora", None)


def flow_data(**overrides) -> dict:
    data = {
        "name": "Order fulfilment",
        "slug": "order-fulfilment",
        "kind": "ledgerflow",
        "external_platform": "",
        "external_url": "",
        "purpose": "Charge, reserve, confirm.",
        "owner": None,
        "team": None,
        "criticality": "high",
        "runbook": "",
        "failure_mode": "",
        "review_cadence_days": 90,
        "tags": ["orders"],
        "external_systems": ["Payments API"],
    }
    data.update(overrides)
    return data


@pytest.fixture
def make_flow():
    def make(actor, **overrides):
        return services.flow_create(actor=actor, data=flow_data(**overrides))

    return make


@pytest.fixture
def ready_flow(olga, make_flow):
    """A draft with every fact activation needs."""
    return make_flow(
        olga,
        owner=olga,
        runbook="## Fix\nReplay the dead letter.",
        failure_mode="Customers are charged for orders that never ship.",
    )


def login(client, user):
    client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def eager_celery(django_capture_on_commit_callbacks):
    """Run tasks in-process as soon as their transaction's on_commit fires.

    The tasks and the driver are the real ones; only the broker hop is left
    out. End-to-end tests with real workers live in test_engine_e2e.py.
    """
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    try:
        yield lambda: django_capture_on_commit_callbacks(execute=True)
    finally:
        app.conf.task_always_eager = False


def allow_outbound(settings, url_or_hostport: str) -> None:
    """Let connectors reach one local test server (and nothing else local)."""
    hostport = url_or_hostport.split("://", 1)[-1].split("/", 1)[0]
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = [*settings.LEDGERFLOW_OUTBOUND_ALLOWLIST, hostport]


@pytest.fixture
def payments(settings):
    from fakeapi.payments import PaymentsServer

    with PaymentsServer() as server:
        allow_outbound(settings, server.url)
        yield server
