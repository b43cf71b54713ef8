"""A credential goes only to its allowed hosts, on every path (first call,
redirect, replay with an edited input, connection test; HTTP, SMTP and
PostgreSQL), and a replay's edited input needs the right to edit the flow and
cannot change a credential field. Every server here is a real local one."""

import io
import json

import pytest
from django.core.management import call_command

from connectors.base import ConnectorError
from connectors.credentials import store as credentials
from connectors.credentials.hosts import fill_allowed_hosts
from connectors.credentials.models import Credential
from flows.teams import team_create
from runs import driver
from runs.ground.models import Event
from runs.models import Run, Step
from tests.conftest import SMTP_PASSWORD, SMTP_USER, login
from tests.engine_helpers import chain, publish
from tests.localserver import Reply

TOKEN = "tok-allowed-hosts-8c1f"


def authorization(seen) -> Reply:
    return Reply(200, {"auth": seen.headers.get("authorization", "")})


@pytest.fixture
def home(local_server):
    """The API the credential belongs to."""
    return local_server({"/me": authorization, "/fail": lambda seen: Reply(404, {"e": "no"})})


@pytest.fixture
def attacker(local_server):
    """A server of the attacker's own, on the outbound allowlist too."""
    return local_server({"/me": authorization, "/grab": authorization})


def bearer(server, name="home-api", hosts=None):
    return credentials.credential_create(
        actor="system:test", name=name, type="bearer", fields={}, secrets={"token": TOKEN},
        allowed_hosts=[f"127.0.0.1:{server.port}"] if hosts is None else hosts,
    )  # fmt: skip


def call(url: str, **config) -> dict:
    config = {"method": "GET", "url": url, "credential": "home-api", **config}
    return {"id": "call", "type": "http.request", "retry": {"max_attempts": 1}, "config": config}


def run_flow(olga, node, eager_celery, slug="hosts", **facts) -> Run:
    flow = publish(olga, chain(node), slug=slug, **facts)
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="user:olga")
    run.refresh_from_db()
    return run


def step(run) -> Step:
    return Step.objects.get(run=run, node_id="call")


def no_token_anywhere():
    assert not any(TOKEN in body for body in Event.objects.values_list("body", flat=True))


# --- HTTP: first call and redirects -----------------------------------------------------


def test_the_credential_goes_to_its_allowed_host(olga, home, eager_celery):
    bearer(home)
    run = run_flow(olga, call(f"{home.url}/me"), eager_celery)
    assert run.status == "succeeded", run.error
    assert home.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_the_first_call_to_another_host_is_refused_unsent(olga, home, attacker, eager_celery):
    bearer(home)
    run = run_flow(olga, call(f"{attacker.url}/grab"), eager_celery)
    assert step(run).status == "dead_lettered"
    assert "may not be sent to 127.0.0.1:" in step(run).error
    assert attacker.seen == []  # refused before any connection
    no_token_anywhere()


def test_a_credential_without_hosts_goes_nowhere(olga, home, eager_celery):
    bearer(home, hosts=[])
    run = run_flow(olga, call(f"{home.url}/me"), eager_celery)
    assert "it has no allowed hosts, so it goes nowhere" in step(run).error
    assert home.seen == []


def test_a_redirect_to_another_host_carries_no_credential(
    olga, local_server, attacker, eager_celery
):
    hop = local_server({"/me": lambda seen: Reply(302, "", {"Location": f"{attacker.url}/grab"})})
    # Even a pattern that allows every port of the address keeps the token
    # on the origin the flow named.
    bearer(hop, hosts=["127.0.0.1"])
    run = run_flow(olga, call(f"{hop.url}/me"), eager_celery)
    assert run.status == "succeeded", run.error
    assert hop.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in attacker.seen[0].headers
    assert step(run).output["body"] == {"auth": ""}


def test_a_wildcard_pattern_does_not_match_a_look_alike(olga, home, eager_celery):
    from connectors.outbound import allowed_hosts

    assert allowed_hosts.matches("*.example.com", "api.example.com", 443)
    assert not allowed_hosts.matches("*.example.com", "example.com.evil.test", 443)
    assert not allowed_hosts.matches("api.example.com:443", "api.example.com", 8443)
    with pytest.raises(allowed_hosts.HostPatternError, match="not a URL"):
        allowed_hosts.clean_patterns("https://api.example.com/")


# --- replay with an edited input -------------------------------------------------------


def dead_letter(olga, home, eager_celery, **facts) -> Run:
    bearer(home)
    run = run_flow(olga, call(f"{home.url}/fail"), eager_celery, **facts)
    assert step(run).status == "dead_lettered"
    return run


def replay(client, run, edited: dict | None):
    data = {"edited_input": json.dumps(edited)} if edited is not None else {}
    return client.post(f"/runs/{run.pk}/steps/call/replay/", data, follow=True)


def test_an_edited_replay_to_another_host_does_not_send_the_credential(
    client, olga, home, attacker, eager_celery
):
    run = dead_letter(olga, home, eager_celery)
    edited = {**step(run).input, "url": f"{attacker.url}/grab"}
    login(client, olga)
    with eager_celery():
        response = replay(client, run, edited)
    assert response.status_code == 200
    assert step(run).status == "dead_lettered" and "may not be sent" in step(run).error
    assert attacker.seen == []
    no_token_anywhere()


def test_an_edited_input_cannot_change_the_credential(client, olga, home, eager_celery):
    run = dead_letter(olga, home, eager_celery)
    bearer(home, name="other-api")
    before = Event.objects.filter(stream=run.stream).count()
    edited = {**step(run).input, "credential": "other-api"}
    page = replay(login(client, olga), run, edited).content.decode()
    assert "cannot change the credential field" in page
    assert Event.objects.filter(stream=run.stream).count() == before
    dropped = {k: v for k, v in step(run).input.items() if k != "credential"}
    assert "cannot change the credential field" in replay(client, run, dropped).content.decode()


def test_an_edited_input_may_not_hold_a_secret(client, olga, home, eager_celery):
    run = dead_letter(olga, home, eager_celery)
    edited = {**step(run).input, "headers": {"X-Api-Key": "sk_live_typed_in_9d"}}
    page = replay(login(client, olga), run, edited).content.decode()
    assert "store it as a credential" in page
    assert not Event.objects.filter(stream=run.stream, type="step.replayed").exists()


def test_editing_a_restricted_teams_step_needs_the_right_to_edit_its_flow(
    client, olga, adam, home, eager_celery
):
    team = team_create(name="Treasury", actor=adam, restricts_edits=True)
    run = dead_letter(olga, home, eager_celery, team=team)
    edited = {**step(run).input, "url": f"{home.url}/me"}
    login(client, olga)
    response = client.post(f"/runs/{run.pk}/steps/call/replay/",
                           {"edited_input": json.dumps(edited)})  # fmt: skip
    assert response.status_code == 403
    assert "only members of Treasury may edit" in response.content.decode()
    assert not Event.objects.filter(stream=run.stream, type="step.replayed").exists()
    # Replaying it unedited is an operator's job, as before.
    with eager_celery():
        replay(client, run, None)
    assert Event.objects.filter(stream=run.stream, type="step.replayed").count() == 1
    # A member edits and replays it (to the credential's own host).
    team.members.add(olga)
    with eager_celery():
        replay(client, run, edited)
    assert step(run).status == "succeeded"
    assert home.seen[-1].path == "/me"
    assert home.seen[-1].headers["authorization"] == f"Bearer {TOKEN}"


# --- connection tests --------------------------------------------------------------------


def test_a_connection_test_goes_only_to_an_allowed_host(client, olga, home, attacker):
    bearer(home)
    home.routes["/health"] = authorization
    attacker.routes["/health"] = authorization
    login(client, olga)

    def test(url):
        config = {"base_url": url, "order_id": "x", "amount": 1, "credential": "home-api"}
        return client.post("/api/v1/connectors/payments.charge/test-connection",
                           {"config": config}, content_type="application/json").json()  # fmt: skip

    refused = test(attacker.url)
    assert refused["ok"] is False and "may not be sent" in refused["error"]
    assert attacker.seen == []
    assert test(home.url) == {"ok": True, "error": ""}
    assert home.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


# --- SMTP and PostgreSQL ----------------------------------------------------------------------


def test_an_smtp_login_goes_only_to_an_allowed_host(olga, smtp_server, eager_celery):
    credentials.credential_create(
        actor="system:test", name="mail", type="smtp",
        fields={"host": smtp_server.host, "port": smtp_server.port, "username": SMTP_USER,
                "starttls": False, "from_address": "ops@ledgerflow.test"},
        secrets={"password": SMTP_PASSWORD}, allowed_hosts=["smtp.example.com:587"],
    )  # fmt: skip
    node = {"id": "call", "type": "email.send", "retry": {"max_attempts": 1},
            "config": {"credential": "mail", "to": ["a@example.com"], "subject": "s",
                       "body": "b"}}  # fmt: skip
    run = run_flow(olga, node, eager_celery, slug="mail")
    assert "may not be sent to 127.0.0.1:" in step(run).error
    assert smtp_server.logins == [] and smtp_server.messages == []
    credential = Credential.objects.get(name="mail")
    server = f"{smtp_server.host}:{smtp_server.port}"
    credentials.credential_update(credential=credential, actor=olga, owner=None,
                                  fields=credential.fields, secrets={},
                                  allowed_hosts=[server])  # fmt: skip
    run = run_flow(olga, node, eager_celery, slug="mail")
    assert run.status == "succeeded", run.error
    assert smtp_server.logins == [SMTP_USER]


def test_a_postgres_password_goes_only_to_an_allowed_host(olga, eager_celery):
    credentials.credential_create(
        actor="system:test", name="warehouse", type="postgres",
        fields={"host": "127.0.0.1", "port": 5432, "dbname": "postgres", "user": "postgres"},
        secrets={"password": "pg-password-77"}, allowed_hosts=["db.example.com:5432"],
    )  # fmt: skip
    node = {"id": "call", "type": "postgres.query", "retry": {"max_attempts": 1},
            "config": {"credential": "warehouse", "sql": "SELECT 1 AS one"}}  # fmt: skip
    run = run_flow(olga, node, eager_celery, slug="pg")
    assert "credential 'warehouse' may not be sent to 127.0.0.1:5432" in step(run).error
    with pytest.raises(ConnectorError, match="its allowed hosts are db.example.com:5432"):
        from connectors.outbound import allowed_hosts

        allowed_hosts.check(credentials.credential_for("warehouse", types={"postgres"}),
                            "127.0.0.1", 5432)  # fmt: skip


# --- the credential pages, the log and the migration -------------------------------------------


def test_the_credential_pages_show_and_edit_allowed_hosts(client, olga):
    login(client, olga)
    response = client.post("/credentials/new/", {
        "type": "bearer", "name": "crm", "token": "crm-token-123",
        "allowed_hosts": "API.crm.example\n*.crm.example, 10.0.0.5:8443"})  # fmt: skip
    assert response.status_code == 302
    credential = Credential.objects.get(name="crm")
    assert credential.allowed_hosts == ["api.crm.example", "*.crm.example", "10.0.0.5:8443"]
    listing = client.get("/credentials/").content.decode()
    assert "*.crm.example" in listing and "10.0.0.5:8443" in listing
    edit_page = client.get(f"/credentials/{credential.pk}/").content.decode()
    assert "api.crm.example\n*.crm.example\n10.0.0.5:8443" in edit_page
    refused = client.post(f"/credentials/{credential.pk}/", {
        "version": credential.version, "allowed_hosts": "https://evil.test/x"})  # fmt: skip
    assert refused.status_code == 422
    assert "give a host or host:port, not a URL" in refused.content.decode()
    client.post(f"/credentials/{credential.pk}/",
                {"version": credential.version, "allowed_hosts": "api.crm.example"})  # fmt: skip
    changed = Event.objects.filter(stream=credential.stream).last()
    assert changed.payload["allowed_hosts"] == ["api.crm.example"]
    assert "allowed_hosts" in changed.payload["changed"]
    assert "none: goes nowhere" not in client.get("/credentials/").content.decode()


def test_existing_credentials_get_the_hosts_their_flows_use(olga, home, eager_celery):
    for name in ("home-api", "idle-api"):
        bearer(home, name=name, hosts=[])
    credentials.credential_create(
        actor="system:test", name="relay", type="smtp",
        fields={"host": "smtp.example.com", "port": 587}, secrets={"password": "relay-pass-1"},
    )  # fmt: skip
    publish(olga, chain(call(f"{home.url}/me"),
                        call("{{ trigger.url }}") | {"id": "dynamic"}), slug="uses")  # fmt: skip
    report = fill_allowed_hosts()
    assert f"home-api: allowed hosts 127.0.0.1:{home.port}" in report
    assert "idle-api: no flow uses it; it goes nowhere until hosts are set" in report
    assert "relay: allowed hosts smtp.example.com:587" in report
    assert Credential.objects.get(name="home-api").allowed_hosts == [f"127.0.0.1:{home.port}"]
    # Recorded as events: a rebuild derives the same rows.
    before = list(Credential.objects.order_by("pk").values())
    Credential.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert list(Credential.objects.order_by("pk").values()) == before
    run = run_flow(olga, call(f"{home.url}/me"), eager_celery, slug="uses-2")
    assert run.status == "succeeded", run.error
