"""Personas with fixed roles, in the healthchecks manner: olga the operator,
rita the reviewer, adam the admin, and nora who has no role at all."""

import os
import threading
import time

import pytest
from django.contrib.auth.models import Group, User

from config.roles import ADMIN, OPERATOR
from flows import services

PASSWORD = "correct-horse-battery"


def pytest_collection_modifyitems(config, items):
    """In parallel runs (`make test`: pytest-xdist), hand out first the long
    tests that start platform processes and use no test database: they mostly
    wait on other processes, so they overlap best with the many short tests,
    and none is left to run alone at the end. The rest keep pytest-django's
    order (database tests, then transactional ones, then the others); each
    worker runs a part of that order in order. Every worker sorts its
    collection alike (xdist checks that they agree); a plain run keeps the
    usual order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def first(item) -> bool:
        fixtures = getattr(item, "fixturenames", ())
        uses_db = item.get_closest_marker("django_db") or {"db", "transactional_db"} & set(fixtures)
        return bool(item.get_closest_marker("slow")) and not uses_db

    items.sort(key=lambda item: not first(item))  # stable


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
    """A reviewer with a mailbox, so approval mail reaches her."""
    from tests.approval_helpers import reviewer

    return reviewer("rita")


@pytest.fixture
def ravi(db):
    """A second reviewer with a mailbox."""
    from tests.approval_helpers import reviewer

    return reviewer("ravi")


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
def celery_in_thread():
    """Tasks run in the thread that commits (no broker), after real commits."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


@pytest.fixture
def eager_celery(celery_in_thread, django_capture_on_commit_callbacks):
    """Run tasks in-process as soon as their transaction's on_commit fires.

    The tasks and the driver are the real ones; only the broker hop is left
    out. End-to-end tests with real workers live in test_engine_e2e.py.
    """
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def sweep_at(eager_celery):
    """Sweep at ``moment``, running what it dispatches before returning."""
    from runs import sweeper
    from runs.ground import clock

    def sweep(moment):
        with clock.frozen_at(moment), eager_celery():
            return sweeper.sweep(moment)

    return sweep


@pytest.fixture
def asgi_server(transactional_db, fresh_channel_layers):
    """The ASGI app under uvicorn (the server `make run` uses), in a thread;
    yields its ``host:port``."""
    import uvicorn

    from config.asgi import application
    from tests.localserver import free_port

    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    fresh_channel_layers()


@pytest.fixture(autouse=True)
def fresh_channel_layers():
    """Each test starts with channel layers of its own. A layer instance is
    cached per process and tied to the event loops that used it: a consumer
    left receiving in a stopped server's loop makes the next loop's receive
    fail ("Two event loops are trying to receive() on one channel layer")."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    return channel_layers.backends.clear


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


@pytest.fixture
def crm(settings):
    """The fake CRM (fakeapi/crm.py) on a free local port, allowlisted; the
    connector's token cache starts empty."""
    from connectors.nodes.crm import forget_tokens
    from fakeapi.crm import CrmServer

    forget_tokens()
    with CrmServer() as server:
        allow_outbound(settings, server.url)
        yield server
    forget_tokens()


@pytest.fixture(autouse=True)
def fresh_breakers():
    """Breakers and rate buckets live in Redis, outside the test's database
    transaction: clear them, so no test inherits another's open breaker (a
    fake API's port may be reused)."""
    import redis
    from django.conf import settings

    url = getattr(settings, "LEDGERFLOW_BREAKER_REDIS_URL", "")
    if not url:
        yield
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=1)

    def clear() -> None:
        keys = list(client.scan_iter("lf:*", count=1000))
        if keys:
            client.delete(*keys)

    clear()
    yield
    clear()


@pytest.fixture
def local_server(settings):
    """Start scriptable HTTP servers on 127.0.0.1, each allowlisted."""
    from tests.localserver import LocalServer

    started = []

    def start(routes=None, *, allow: bool = True):
        server = LocalServer(routes).__enter__()
        started.append(server)
        if allow:
            allow_outbound(settings, server.url)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-pass-Q7v!x"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server (aiosmtpd) on a free local port, allowlisted. It
    accepts one login (SMTP_USER / SMTP_PASSWORD) and keeps what it gets."""
    import logging

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tests.connector_helpers import MailSink
    from tests.localserver import free_port

    sink = MailSink(host="127.0.0.1", port=free_port())

    def authenticator(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode()
        password = auth_data.password.decode()
        sink.logins.append(login)
        ok = (login, password) == (SMTP_USER, SMTP_PASSWORD)
        # handled=False: the server itself answers 535 to a refused login.
        return AuthResult(success=ok, handled=False)

    # The remote's own trace of the SMTP dialogue (AUTH lines included) is
    # not Ledgerflow's log; keep it out of the captured records.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(
        sink,
        hostname=sink.host,
        port=sink.port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    allow_outbound(settings, f"{sink.host}:{sink.port}")
    try:
        yield sink
    finally:
        controller.stop()
