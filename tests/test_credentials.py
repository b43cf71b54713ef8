"""The credential store: secrets encrypted at rest under a rotatable key,
every change an event holding only ciphertext, the row a rebuildable
projection, and the pages write-only for secrets."""

import base64
import io
import json
import os

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.urls import reverse

from connectors.base import ConnectorError
from connectors.credentials import store as credentials
from connectors.credentials.models import Credential
from runs.ground.eventstore import append, verify_stream
from runs.ground.models import Event
from tests.conftest import login

TOKEN = "tok-4f9Q-very-secret"


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def bearer(olga):
    return credentials.credential_create(
        actor=olga, name="crm-api", type="bearer", owner=olga, fields={},
        secrets={"token": TOKEN},
    )  # fmt: skip


def test_a_credential_is_encrypted_at_rest_and_its_events_hold_only_ciphertext(bearer):
    row = Credential.objects.get(name="crm-api")
    assert TOKEN not in row.ciphertext and row.secret_names == ["token"]
    assert credentials.decrypt(row.ciphertext) == {"token": TOKEN}
    [event] = Event.objects.filter(stream=row.stream)
    assert event.type == "credential.created"
    assert TOKEN not in event.body and TOKEN not in json.dumps(event.payload)
    assert event.payload["ciphertext"] == row.ciphertext
    assert credentials.credential_secrets("crm-api") == {"token": TOKEN}


def test_names_are_unique_and_required_secrets_are_required(olga, bearer):
    with pytest.raises(credentials.CredentialError, match="already exists"):
        credentials.credential_create(
            actor=olga, name="crm-api", type="bearer", fields={}, secrets={"token": "x" * 10}
        )
    with pytest.raises(credentials.CredentialError, match="Token is required"):
        credentials.credential_create(
            actor=olga, name="other", type="bearer", fields={}, secrets={}
        )
    with pytest.raises(credentials.CredentialError, match="Host is required"):
        credentials.credential_create(
            actor=olga, name="db", type="postgres", fields={"dbname": "x", "user": "u"},
            secrets={"password": "pw-123456"},
        )  # fmt: skip


def test_an_update_with_a_blank_secret_keeps_it_and_records_names_only(olga, adam, bearer):
    credentials.credential_update(credential=bearer, actor=adam, owner=adam, fields={},
                                  secrets={"token": ""})  # fmt: skip
    assert credentials.credential_secrets("crm-api") == {"token": TOKEN}
    credentials.credential_update(credential=bearer, actor=adam, owner=adam, fields={},
                                  secrets={"token": "tok-new-value-77"})  # fmt: skip
    assert credentials.credential_secrets("crm-api") == {"token": "tok-new-value-77"}
    updates = Event.objects.filter(stream=bearer.stream, type="credential.updated")
    assert [e.payload["changed"] for e in updates.order_by("seq")] == [
        ["owner"],
        ["token (secret)"],
    ]
    assert all("tok-new-value-77" not in e.body for e in updates)


def test_rotation_re_encrypts_with_the_newest_key_one_event_each(olga, bearer, settings):
    old_key = settings.LEDGERFLOW_SECRET_KEYS[0]
    credentials.credential_create(actor=olga, name="smtp-main", type="smtp",
                                  fields={"host": "smtp.example.com"},
                                  secrets={"password": "mail-pass-99"})  # fmt: skip
    before = {c.name: c.ciphertext for c in Credential.objects.all()}
    fresh = new_key()
    settings.LEDGERFLOW_SECRET_KEYS = [fresh, old_key]
    out = io.StringIO()
    call_command("rotate_credentials", stdout=out)
    assert "2 credential(s) re-encrypted" in out.getvalue()
    for credential in Credential.objects.all():
        assert credential.ciphertext != before[credential.name]
        # Only the newest key is needed from now on.
        Fernet(fresh.encode()).decrypt(credential.ciphertext.encode())
        rotated = Event.objects.filter(stream=credential.stream, type="credential.rotated")
        assert rotated.count() == 1
        assert verify_stream(credential.stream) is None
    settings.LEDGERFLOW_SECRET_KEYS = [fresh]
    assert credentials.credential_secrets("crm-api") == {"token": TOKEN}
    assert credentials.credential_secrets("smtp-main") == {"password": "mail-pass-99"}


def test_a_credential_that_no_key_decrypts_fails_the_step_clearly(bearer, settings):
    settings.LEDGERFLOW_SECRET_KEYS = [new_key()]
    with pytest.raises(ConnectorError, match="cannot be decrypted") as failed:
        credentials.credential_for("crm-api", types={"bearer"})
    assert failed.value.retryable is False


def test_a_step_naming_a_missing_or_wrong_credential_fails_without_retry(bearer):
    with pytest.raises(ConnectorError, match="'nope' does not exist"):
        credentials.credential_for("nope", types={"bearer"})
    with pytest.raises(ConnectorError, match="is of type bearer; this step needs smtp"):
        credentials.credential_for("crm-api", types={"smtp"})


def test_rebuild_projections_derives_the_same_credential_rows(olga, adam, bearer):
    credentials.credential_create(actor=olga, name="gone", type="header_key",
                                  fields={"header_name": "X-Key"},
                                  secrets={"key": "key-value-123"})  # fmt: skip
    credentials.credential_update(credential=bearer, actor=adam, owner=adam, fields={},
                                  secrets={"token": "tok-second-1"})  # fmt: skip
    credentials.credential_rotate(credential=bearer)
    credentials.credential_delete(credential=Credential.objects.get(name="gone"), actor=adam)

    def snapshot():
        return list(Credential.objects.order_by("pk").values())

    before = snapshot()
    assert [row["name"] for row in before] == ["crm-api"]
    Credential.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == before


def test_decrypted_secrets_are_redacted_from_any_event(bearer):
    basic = credentials.credential_create(
        actor="system:test", name="legacy", type="basic", fields={"username": "svc"},
        secrets={"password": "pa55-word-xyz"},
    )  # fmt: skip
    header = base64.b64encode(b"svc:pa55-word-xyz").decode()
    event = append(
        "test:echo", "test.echoed",
        {"echo": f"Bearer {TOKEN}", "auth": f"Basic {header}"},
        actor="system:test",
    )  # fmt: skip
    assert TOKEN not in event.body and header not in event.body
    assert event.payload["echo"] == "Bearer [redacted]"
    assert basic.secret_names == ["password"]


def test_a_changed_secret_is_redacted_at_once(olga, bearer):
    credentials.credential_update(credential=bearer, actor=olga, owner=olga, fields={},
                                  secrets={"token": "tok-brand-new-555"})  # fmt: skip
    event = append("test:echo", "test.echoed", {"v": "tok-brand-new-555"}, actor="system:test")
    assert event.payload == {"v": "[redacted]"}


def test_rotation_keeps_redaction_working(bearer, settings):
    settings.LEDGERFLOW_SECRET_KEYS = [new_key(), *settings.LEDGERFLOW_SECRET_KEYS]
    call_command("rotate_credentials", stdout=io.StringIO())
    credentials.forget_cached_secrets()
    event = append("test:echo", "test.echoed", {"v": TOKEN}, actor="system:test")
    assert event.payload == {"v": "[redacted]"}


# --- pages ---------------------------------------------------------------------


def test_an_operator_creates_a_credential_and_never_sees_the_secret_again(client, olga):
    login(client, olga)
    page = client.get(reverse("credentials:create") + "?type=basic")
    assert page.status_code == 200 and "Password" in page.content.decode()
    response = client.post(
        reverse("credentials:create"),
        {"type": "basic", "name": "billing", "owner": olga.pk, "username": "svc",
         "password": "hunter2-secret-pw"},
    )  # fmt: skip
    assert response.status_code == 302
    credential = Credential.objects.get(name="billing")
    assert credential.fields == {"username": "svc"}
    listing = client.get(reverse("credentials:list")).content.decode()
    edit = client.get(reverse("credentials:edit", args=[credential.pk])).content.decode()
    assert "billing" in listing and "password set" in listing
    assert "set — leave blank to keep" in edit
    for html in (listing, edit):
        assert "hunter2-secret-pw" not in html


def test_editing_with_blank_secrets_keeps_them(client, olga, bearer):
    login(client, olga)
    url = reverse("credentials:edit", args=[bearer.pk])
    response = client.post(url, {"owner": olga.pk, "token": "", "version": bearer.version})
    assert response.status_code == 302
    assert credentials.credential_secrets("crm-api") == {"token": TOKEN}


def test_bad_input_is_a_clear_message_and_the_secret_is_not_echoed(client, olga, bearer):
    login(client, olga)
    response = client.post(
        reverse("credentials:create"),
        {"type": "bearer", "name": "crm-api", "token": "tok-typed-in-form-1"},
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "already exists" in html and "tok-typed-in-form-1" not in html
    response = client.post(
        reverse("credentials:create"),
        {"type": "postgres", "name": "db", "host": "db.internal", "port": "not-a-port",
         "dbname": "app", "user": "u", "password": "pg-secret-typed"},
    )  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 422 and "Enter a whole number" in html
    assert "pg-secret-typed" not in html and 'value="db.internal"' in html


def test_a_stale_edit_is_refused(client, olga, adam, bearer):
    login(client, olga)
    url = reverse("credentials:edit", args=[bearer.pk])
    credentials.credential_update(credential=bearer, actor=adam, owner=adam, fields={},
                                  secrets={})  # fmt: skip
    response = client.post(url, {"owner": olga.pk, "token": "", "version": bearer.version})
    assert response.status_code == 422
    assert "changed this credential while you were editing" in response.content.decode()


def test_deleting_a_credential_frees_its_name(client, adam, bearer):
    login(client, adam)
    response = client.post(reverse("credentials:delete", args=[bearer.pk]))
    assert response.status_code == 302
    assert not Credential.objects.filter(name="crm-api").exists()
    assert Event.objects.filter(stream=bearer.stream, type="credential.deleted").exists()


def test_reviewers_cannot_open_credentials(client, rita):
    login(client, rita)
    assert client.get(reverse("credentials:list")).status_code == 403


def test_export_and_import_keep_credential_names_not_secrets(olga, bearer):
    from flows import transfer
    from tests.engine_helpers import chain, publish

    graph = chain(
        {
            "id": "call",
            "type": "http.request",
            "config": {"url": "https://crm.example.test/me", "credential": "crm-api"},
        }
    )
    flow = publish(olga, graph, slug="crm-sync")  # fmt: skip
    text = transfer.export_flow(flow)
    assert '"credential": "crm-api"' in text and TOKEN not in text
    document = json.loads(text)
    document["flow"]["slug"] = "crm-sync-copy"
    copy = transfer.import_flow(document, actor=olga)
    [node] = [n for n in copy.versions.get().graph["nodes"] if n["id"] == "call"]
    assert node["config"]["credential"] == "crm-api"


def test_the_credential_page_lists_the_flows_that_name_it(client, olga, bearer):
    from tests.engine_helpers import chain, publish

    graph = chain(
        {
            "id": "call",
            "type": "http.request",
            "config": {"url": "https://crm.example.test/me", "credential": "crm-api"},
        }
    )
    publish(olga, graph, slug="crm-sync")  # fmt: skip
    publish(olga, chain({"id": "t", "type": "transform", "config": {"fields": {}}}), slug="other")
    assert [flow.slug for flow in credentials.flows_using("crm-api")] == ["crm-sync"]
    login(client, olga)
    page = client.get(reverse("credentials:edit", args=[bearer.pk])).content.decode()
    assert ">crm-sync<" in page


def test_a_secret_too_short_to_redact_is_refused(olga):
    with pytest.raises(credentials.CredentialError, match="at least 6 characters"):
        credentials.credential_create(
            actor=olga, name="short", type="bearer", fields={}, secrets={"token": "abc"}
        )


def test_a_credential_whose_key_is_gone_can_be_given_its_secret_again(olga, bearer, settings):
    settings.LEDGERFLOW_SECRET_KEYS = [new_key()]
    with pytest.raises(credentials.CredentialError, match="Token is required"):
        credentials.credential_update(credential=bearer, actor=olga, owner=olga, fields={},
                                      secrets={"token": ""})  # fmt: skip
    credentials.credential_update(credential=bearer, actor=olga, owner=olga, fields={},
                                  secrets={"token": "tok-after-key-loss"})  # fmt: skip
    assert credentials.credential_secrets("crm-api") == {"token": "tok-after-key-loss"}


def test_the_credential_page_reads_drafts_of_any_shape(client, olga, bearer):
    """A draft is whatever was saved: a default compensation is the string
    "default", and half-typed nodes are not objects of the usual shape."""
    from flows import services
    from tests.engine_helpers import chain, publish

    call = {"id": "call", "type": "http.request",
            "config": {"url": "https://crm.example.test/me", "credential": "crm-api"}}  # fmt: skip
    transform_node = {"id": "t", "type": "transform", "config": {"fields": {}}}
    flow = publish(olga, chain(transform_node), slug="drafty")
    draft = chain(
        {**call, "compensation": "default"},
        {"id": "undo", "type": "http.request", "config": {"url": "https://x.test/"},
         "compensation": {"type": "http.request",
                          "config": {"url": "https://x.test/undo", "credential": "crm-api"}}},
        {"id": "junk", "type": 7, "config": "not an object", "compensation": ["?"]},
        transform_node,
    )  # fmt: skip
    draft["nodes"].append("not a node")
    services.flow_save_draft(flow=flow, actor=olga, graph=draft)
    services.flow_save_draft(flow=publish(olga, chain(), slug="empty"), actor=olga,
                             graph={"nodes": "none"})  # fmt: skip
    assert [f.slug for f in credentials.flows_using("crm-api")] == ["drafty"]
    login(client, olga)
    response = client.get(reverse("credentials:edit", args=[bearer.pk]))
    assert response.status_code == 200 and ">drafty<" in response.content.decode()
