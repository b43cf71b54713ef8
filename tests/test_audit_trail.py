"""The audit trail for auditors: the page's filters and keyset pages, events
in people's words with their payload and diffs, the chains' state, and the
exports streamed from a server-side cursor."""

import csv
import datetime as dt
import io
import json
import re

import pytest
from django.db import connection
from django.urls import reverse

from config.audit import diffs, export, trail, words
from flows import services
from runs import driver
from runs.chain_checks import verify_chains
from runs.ground.eventstore import append
from runs.models import Event
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform
from tests.payments_helpers import charge_node, control

URL = reverse("audit_log")


def _event(type_: str, payload: dict, *, actor: str = "user:ana", stream: str = "run:12"):
    return Event(stream=stream, seq=1, type=type_, payload=payload, actor=actor)


NAMES = words.Names(flows={3: "Orders"})


# --- words ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "sentence"),
    [
        (_event("flow.published", {"number": 3}, stream="flow:3"),
         "ana published version 3 of flow “Orders”"),
        (_event("step.retry_scheduled", {"node": "charge", "attempt": 2}, actor="system:engine"),
         "the engine retried step charge of run 12"),
        (_event("run.started", {"flow_id": 3, "version": 2}, actor="webhook", stream="run:40"),
         "webhook started run 40 of “Orders” on version 2"),
        (_event("run.started", {"flow_id": 9, "replay_of": 7}, stream="run:8"),
         "ana replayed run 7 as run 8"),
        (_event("step.replayed", {"node": "charge", "edited_input": {}}),
         "ana replayed step charge of run 12 with an edited input"),
        (_event("step.discarded", {"node": "charge", "reason": "duplicate order"}),
         "ana discarded step charge of run 12: duplicate order"),
        (_event("run.cancelled", {"reason": ""}, actor="run:4"), "run 4 cancelled run 12"),
        (_event("approval.decided", {"node": "ok", "decision": "approve"}, actor="system:sla"),
         "system (sla) decided the approval at step ok of run 12 (approve)"),
        (_event("flow.edited", {"changes": {"runbook": {}}}, stream="flow:3"),
         "ana edited runbook of flow “Orders”"),
        (_event("delivery.refused", {"detail": {"reason": "bad JSON"}}, actor="queue:orders",
                stream="triggers:3"),
         "queue orders delivery refused for flow “Orders”: bad JSON"),
        (_event("audit.chain_broken", {"stream": "flow:1", "seq": 3, "reason": "hash differs"},
                actor="system:audit", stream="audit:alerts"),
         "system (audit) found the hash chain of flow:1 broken at seq 3: hash differs"),
        (_event("widget.polished", {}, actor="topic:orders", stream="widget:5"),
         "event on topic orders recorded widget polished on widget 5"),
    ],
)  # fmt: skip
def test_events_read_as_sentences(event, sentence):
    assert words.describe(event, NAMES) == sentence


def test_a_payload_of_another_shape_still_reads_as_a_sentence():
    event = _event("delivery.refused", {"detail": "not a dict"}, stream="triggers:3")
    assert words.describe(event, NAMES) == "ana recorded delivery refused on flow “Orders”"


def test_actors_in_words():
    assert [words.actor_words(a) for a in ("user:olga", "system:engine", "webhook:test", "")] == [
        "olga", "the engine", "test webhook", "someone",
    ]  # fmt: skip


# --- diffs ----------------------------------------------------------------


def test_graph_changes_name_nodes_and_edges_added_removed_and_changed():
    before = chain(transform("shape", a="1"), transform("old", b="2"))
    after = chain(transform("shape", a="2"), transform("new", c="3"))
    changes = {(c.what, c.before, c.after) for c in diffs.graph_changes(before, after)}
    assert ("node new", "—", json.dumps(transform("new", c="3"), sort_keys=True)) in changes
    assert ("node old", json.dumps(transform("old", b="2"), sort_keys=True), "—") in changes
    assert ("node shape config", '{"fields": {"a": "1"}}', '{"fields": {"a": "2"}}') in changes
    assert ("edge", "shape → old", "—") in changes and ("edge", "—", "shape → new") in changes


def test_field_changes_and_owner_moves():
    edited = {"changes": {"runbook": {"from": "old text", "to": "new text"}}}
    assert diffs.field_changes(edited) == [diffs.Change("runbook", "old text", "new text")]
    moved = {"from": {"username": "olga"}, "to": None}
    assert diffs.field_changes(moved) == [diffs.Change("owner", "olga", "—")]


# --- the page -------------------------------------------------------------


@pytest.fixture
def history(olga, eager_celery):
    """Two flows, a draft edited twice, and runs started by a person and a
    webhook; the engine carries them to the end."""
    orders = publish(olga, chain(transform("shape", order="{{ trigger.order }}")), slug="orders")
    refunds = publish(olga, chain(transform("shape", id="{{ trigger.id }}")), slug="refunds")
    refunds.name = "Refund requests"
    refunds.save()
    services.flow_save_draft(flow=orders, actor=olga, graph=chain(transform("shape", order="x")))
    with eager_celery():
        manual = driver.start_run(flow=orders, input={"order": "A-1"}, actor="user:olga")
        hooked = driver.start_run(flow=refunds, input={"id": "R-1"}, actor="webhook")
    return orders, refunds, manual, hooked


def shown(response) -> list[int]:
    return [int(n) for n in re.findall(r'data-event="(\d+)"', response.content.decode())]


def test_admins_see_every_event_newest_first_in_words(client, adam, history):
    login(client, adam)
    response = client.get(URL)
    assert response.status_code == 200
    assert shown(response) == list(
        Event.objects.order_by("-occurred_at", "-id").values_list("pk", flat=True)[:50]
    )
    page = response.content.decode()
    assert "olga published version 1 of flow “orders”" in page
    assert "webhook started run" in page


def test_filter_by_flow_name_takes_its_own_and_its_runs_streams(client, adam, history):
    orders, refunds, manual, hooked = history
    login(client, adam)
    streams = set(Event.objects.filter(pk__in=shown(client.get(URL, {"flow": "order"})))
                  .values_list("stream", flat=True))  # fmt: skip
    assert streams == {orders.stream, manual.stream}
    streams = set(Event.objects.filter(pk__in=shown(client.get(URL, {"flow": "Refund req"})))
                  .values_list("stream", flat=True))  # fmt: skip
    assert streams == {refunds.stream, hooked.stream}


def test_filters_by_actor_run_type_and_time(client, adam, history):
    orders, refunds, manual, hooked = history
    login(client, adam)

    def events(**params):
        return Event.objects.filter(pk__in=shown(client.get(URL, params)))

    assert set(events(actor="olga").values_list("actor", flat=True)) == {"user:olga"}
    assert set(events(actor="webhook").values_list("stream", flat=True)) == {hooked.stream}
    # The people and triggers started the runs; the engine ran their steps.
    engine = events(actor="system")
    assert set(engine.values_list("actor", flat=True)) == {"system:engine"}
    assert set(engine.values_list("stream", flat=True)) == {manual.stream, hooked.stream}
    assert {"step.succeeded", "run.succeeded"} <= set(engine.values_list("type", flat=True))
    olgas = events(actor="olga", run=str(manual.pk))
    assert list(olgas.values_list("type", flat=True)) == ["run.started"]
    assert set(events(run=str(manual.pk)).values_list("stream", flat=True)) == {manual.stream}
    assert set(events(type="step.").values_list("type", flat=True)) >= {"step.succeeded"}
    assert all(t.startswith("step.") for t in events(type="step.").values_list("type", flat=True))
    published = Event.objects.filter(type="flow.published").order_by("occurred_at")
    first, last = published.first(), published.last()
    window = events(since=first.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                    until=(last.occurred_at + dt.timedelta(microseconds=1)).isoformat(),
                    type="flow.published")  # fmt: skip
    assert set(window) == set(published)
    assert not events(until="2000-01-01").exists()


def test_pages_continue_by_cursor_without_gaps_or_repeats(db, history):
    seen, after = [], ""
    while True:
        page = trail.audit_page(trail.AuditFilters(), after=after, size=4)
        seen += [row.event.pk for row in page.rows]
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert seen == list(Event.objects.order_by("-occurred_at", "-id").values_list("pk", flat=True))


def test_the_next_page_keeps_the_filters_exactly(history):
    first = Event.objects.order_by("occurred_at", "id").first()
    since = (first.occurred_at + dt.timedelta(microseconds=1)).isoformat()
    filters = trail.AuditFilters.from_params({"since": since, "type": "step."})
    assert trail.AuditFilters.from_params(filters.query()) == filters


def test_bad_filters_and_damaged_cursors_are_explained(client, adam, history):
    login(client, adam)
    for params, field in (({"run": "twelve"}, "run"), ({"since": "yesterday"}, "since"),
                          ({"after": "!!!"}, "after")):  # fmt: skip
        response = client.get(URL, params)
        assert response.status_code == 400, params
        assert f'data-field="{field}"' in response.content.decode()
    assert client.get(reverse("audit_export", args=["xml"])).status_code == 404
    assert client.get(reverse("audit_export", args=["csv"]), {"run": "x"}).status_code == 400


def test_a_draft_edit_shows_before_and_after(client, adam, history):
    login(client, adam)
    response = client.get(URL, {"flow": "orders", "type": "flow.draft_saved"})
    page = response.content.decode()
    assert "olga saved a draft of flow “orders”" in page
    assert 'data-testid="audit-diff"' in page
    assert "node shape config" in page
    assert "{{ trigger.order }}" in page and "&quot;x&quot;" in page


def test_engine_actions_are_the_systems_and_the_start_is_the_persons(
    client, adam, olga, eager_celery, payments
):
    flow = publish(olga, chain(charge_node(payments)), slug="pay")
    control(payments, fail_next=1)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "A-1", "amount": 5}, actor="user:olga")
    login(client, adam)
    page = client.get(URL, {"run": run.pk}).content.decode()
    assert f"olga started run {run.pk} of “pay” on version 1" in page
    assert f"the engine retried step charge of run {run.pk}" in page
    system = client.get(URL, {"run": run.pk, "actor": "system"})
    assert set(Event.objects.filter(pk__in=shown(system)).values_list("actor", flat=True)) == {
        "system:engine"
    }


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE runs_event DISABLE TRIGGER runs_event_no_update_or_delete")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE runs_event ENABLE TRIGGER runs_event_no_update_or_delete")


def test_chain_state_per_stream_and_a_break_in_red(client, adam, history):
    orders = history[0]
    verify_chains()
    login(client, adam)
    page = client.get(URL, {"stream": orders.stream}).content.decode()
    head = Event.objects.filter(stream=orders.stream).order_by("-seq").first()
    assert f"verified up to seq {head.seq} at" in page
    assert 'data-testid="chain-alerts"' not in page

    append(orders.stream, "flow.reviewed", {"reviewed_on": "2026-11-30"}, actor="user:olga")
    second = Event.objects.get(stream=orders.stream, seq=head.seq + 1)
    _tamper("UPDATE runs_event SET actor = 'user:eve' WHERE id = %s", [second.pk])
    verify_chains()
    page = client.get(URL, {"stream": orders.stream}).content.decode()
    assert 'data-testid="chain-alerts"' in page
    assert f"is broken at seq {second.seq}" in page
    assert f'<tr data-event="{second.pk}" class="chain-broken">' in page
    assert f"verified up to seq {head.seq}" in page


# --- exports --------------------------------------------------------------


def test_csv_export_streams_the_filtered_events_in_words(client, adam, history):
    manual = history[2]
    login(client, adam)
    response = client.get(reverse("audit_export", args=["csv"]), {"run": manual.pk})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    expected = Event.objects.filter(stream=manual.stream).order_by("-occurred_at", "-id")
    assert [(r["stream"], int(r["seq"])) for r in rows] == [(e.stream, e.seq) for e in expected]
    assert rows[-1]["description"].startswith(f"olga started run {manual.pk}")
    assert json.loads(rows[-1]["payload"]) == expected.last().payload


def test_jsonl_export_is_one_event_per_line(client, adam, history):
    login(client, adam)
    response = client.get(reverse("audit_export", args=["jsonl"]), {"type": "flow."})
    assert response.streaming
    lines = b"".join(response.streaming_content).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == Event.objects.filter(type__startswith="flow.").count()
    assert {"occurred_at", "stream", "seq", "type", "actor", "description", "payload",
            "hash"} == records[0].keys()  # fmt: skip


@pytest.mark.skipif(connection.vendor != "postgresql", reason="server-side cursors")
def test_an_export_reads_through_a_server_side_cursor(client, adam, history):
    """The export holds a chunk, not the result: while the first lines are
    out, the rows are still behind an open cursor in the database."""
    login(client, adam)
    response = client.get(reverse("audit_export", args=["jsonl"]))
    lines = iter(response.streaming_content)
    assert json.loads(next(lines))["seq"] >= 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors WHERE statement ILIKE %s",
                       ["%runs_event%"])  # fmt: skip
        assert cursor.fetchone()[0] == 1
    assert sum(1 for _ in lines) == Event.objects.count() - 1
    assert export.CHUNK_SIZE <= 5000


def test_the_earlier_address_redirects_with_its_filters(client, adam):
    login(client, adam)
    response = client.get("/audit-log/?actor=adam&type=flow.published")
    assert response.status_code == 302
    assert response["Location"] == URL + "?actor=adam&type=flow.published"
