"""The dead-letter inbox: dead letters grouped by flow and error signature,
their ages, failed compensations first, triage (assignments and notes) as
events that rebuild, discard with a reason, the bulk-replay preview, edits,
and the exports."""

import csv
import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from runs import deadletters, decider, driver, triage
from runs.ground import clock
from runs.ground.models import Event
from runs.models import DeadLetterAssignment, DeadLetterNote, Run, Step
from runs.signatures import normalise, signature_of
from tests.conftest import login
from tests.engine_helpers import chain, publish
from tests.payments_helpers import charge_node, control, report
from tests.test_order_saga import order, saga_graph

START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
NOTE_COLUMNS = ("run_id", "node_id", "seq", "text", "actor", "written_at")


# --- Signatures (pure) ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("order 'A-17' not found", "order <value> not found"),
        ('field "amount" is 12.5', "field <value> is <n>"),
        ("request 3f2a1b4c-1111-2222-3333-444455556666 failed", "request <uuid> failed"),
        ("failed at 2026-11-23T12:00:01.123Z, retry", "failed at <time>, retry"),
        ("key 9f86d081884c7d659a2feaa0c55ad015 rejected", "key <id> rejected"),
        ("ord_1234 declined", "<id> declined"),
        (
            "POST http://127.0.0.1:40123/charges answered 422",
            "POST http://<n>:<n>/charges answered 422",
        ),
        ("took   5.2s\n(HTTP 503)", "took <n>s (HTTP 503)"),
        ("", ""),
    ],
)
def test_normalise_sets_per_occurrence_details_aside(error, expected):
    assert normalise(error) == expected


def test_errors_that_differ_only_in_details_share_a_signature():
    one = signature_of(error="order 'A-1' of 5 EUR refused", connector="http.request", target="p")
    two = signature_of(error="order 'B-9' of 70 EUR refused", connector="http.request", target="p")
    assert one == two and one.key == two.key and len(one.key) == 16


def test_a_status_a_connector_or_a_target_makes_another_signature():
    base = {"error": "POST /charges answered 422", "connector": "http.request", "target": "p"}
    keys = {
        signature_of(**base).key,
        signature_of(**{**base, "error": "POST /charges answered 503"}).key,
        signature_of(**{**base, "connector": "payments.charge"}).key,
        signature_of(**{**base, "target": "q"}).key,
    }
    assert len(keys) == 4


# --- Fixtures ---------------------------------------------------------------


def charge_flow(olga, payments, slug="charges"):
    node = charge_node(payments, retry={"max_attempts": 1})
    return publish(olga, chain(node), slug=slug)


def start(flow, eager_celery, at=START, **data) -> Run:
    with clock.frozen_at(at), eager_celery():
        return driver.start_run(flow=flow, input=data, actor="user:olga")


def refused_charges(olga, payments, eager_celery, flow=None, count=2, since=START):
    """Runs whose charge the API refuses (a negative amount: 422, final)."""
    flow = flow or charge_flow(olga, payments)
    runs = [
        start(flow, eager_celery, at=since + dt.timedelta(minutes=n), order_id=f"D-{n}",
              amount=-(n + 1))
        for n in range(count)
    ]  # fmt: skip
    for run in runs:
        assert Step.objects.get(run=run, node_id="charge").status == decider.DEAD_LETTERED
    return flow, runs


def billing(olga, payments, eager_celery):
    """One refused charge of another flow, a day after the first ones."""
    flow = charge_flow(olga, payments, "billing")
    return refused_charges(olga, payments, eager_celery, flow, 1, START + dt.timedelta(days=1))


def failed_refund(olga, payments, eager_celery) -> Run:
    """A run whose charge could not be refunded: its undo is a dead letter."""
    flow = publish(olga, saga_graph(payments.url, on_failure="dead_letter"), slug="orders")
    control(payments, inventory_fail_next=1, inventory_fail_status=409)
    with clock.frozen_at(START + dt.timedelta(hours=1)), eager_celery():
        run = driver.start_run(flow=flow, input=order("S-1"), actor="user:olga")
    control(payments, fail_next=1, fail_status=400)
    with clock.frozen_at(START + dt.timedelta(hours=1)), eager_celery():
        driver.discard_dead_letter(run.pk, "reserve", actor="user:olga", reason="out of stock")
    undo = Step.objects.get(run=run, node_id="charge~undo")
    assert undo.status == decider.DEAD_LETTERED, undo.error
    return run


# --- The inbox ---------------------------------------------------------------


def test_dead_letters_group_by_flow_and_signature_with_count_and_oldest_age(
    client, olga, payments, eager_celery
):
    flow, runs = refused_charges(olga, payments, eager_celery, count=3)
    billing(olga, payments, eager_celery)
    groups, truncated = deadletters.inbox_groups(deadletters.DeadLetterFilters())
    assert not truncated
    assert [(g.flow.slug, len(g.letters)) for g in groups] == [("charges", 3), ("billing", 1)]
    group = groups[0]
    assert group.signature.connector == "http.request"
    assert group.signature.target == payments.url.split("://")[1]
    assert "answered 422" in group.signature.text
    # The oldest is the first refusal, recorded at the time of its attempt.
    assert group.oldest == START
    login(client, olga)
    page = client.get(reverse("runs:dead_letters")).content.decode()
    assert page.count('data-testid="dead-letter-group"') == 2
    assert '<strong data-testid="group-count">3</strong>' in page
    assert f'data-select-group="{group.key}"' in page
    assert page.count(f'data-group="{group.key}"') == 1 + 3  # the section and each box
    assert 'data-testid="dead-letter-badge" aria-label="4 dead letters">4<' in page


def test_the_inbox_filters_by_flow_name(client, olga, payments, eager_celery):
    refused_charges(olga, payments, eager_celery, count=1)
    refused_charges(
        olga, payments, eager_celery, flow=charge_flow(olga, payments, "billing"), count=1
    )
    login(client, olga)
    page = client.get(reverse("runs:dead_letters"), {"flow": "billing"}).content.decode()
    assert page.count('data-testid="dead-letter-group"') == 1 and "billing" in page
    page = client.get(reverse("runs:dead_letters"), {"flow": "nothing like it"}).content.decode()
    assert "No dead letters in flows matching" in page


def test_a_failed_compensation_stands_first_in_red(client, olga, payments, eager_celery):
    refused_charges(olga, payments, eager_celery, count=1)  # older than the refund
    run = failed_refund(olga, payments, eager_celery)
    groups, _ = deadletters.inbox_groups(deadletters.DeadLetterFilters())
    assert groups[0].critical and groups[0].letters[0].step.run_id == run.pk
    assert not groups[1].critical
    login(client, olga)
    page = client.get(reverse("runs:dead_letters")).content.decode()
    critical = page.index("dead-letter-group dead-letter-critical")
    assert critical < page.index('data-testid="dead-letter-group"', critical + 1)


def test_the_page_of_a_dead_letter_shows_attempts_target_breaker_and_runbook(
    client, olga, payments, eager_celery
):
    _, (run, _) = refused_charges(olga, payments, eager_celery)
    login(client, olga)
    response = client.get(reverse("runs:dead_letter", args=[run.pk, "charge"]))
    page = response.content.decode()
    step = Step.objects.get(run=run, node_id="charge")
    assert response.status_code == 200
    assert "answered 422" in page and "2026-11-23T12:00:00" in page  # the attempt and its time
    assert payments.url.split("://")[1] in page
    assert 'data-testid="breaker-state">closed (never tripped)' in page
    assert "<p>Replay the dead letter.</p>" in page  # the runbook, as markdown
    assert step.idempotency_key in page and "&quot;amount&quot;: -1" in page
    assert 'data-confirm="Replay step charge of run' in page


def test_a_step_that_is_no_longer_a_dead_letter_sends_its_page_to_the_run(
    client, olga, payments, eager_celery
):
    _, (run, _) = refused_charges(olga, payments, eager_celery)
    with eager_celery():
        driver.discard_dead_letter(run.pk, "charge", actor="user:olga", reason="test")
    login(client, olga)
    response = client.get(reverse("runs:dead_letter", args=[run.pk, "charge"]))
    assert response.status_code == 302 and response.url == reverse("runs:detail", args=[run.pk])
    assert client.get(reverse("runs:dead_letter", args=[run.pk, "nope"])).status_code == 404


# --- Actions ------------------------------------------------------------------


def test_assign_and_annotate_are_events_with_their_actor_and_rebuild(
    client, olga, adam, payments, eager_celery
):
    _, runs = refused_charges(olga, payments, eager_celery)
    login(client, olga)
    steps = [f"{run.pk}:charge" for run in runs]
    client.post(reverse("runs:dead_letters_assign"), {"step": steps, "assignee": "adam"})
    client.post(reverse("runs:dead_letters_annotate"), {"step": steps[:1], "text": "API bug"})
    stream = triage.stream_of(runs[0].pk, "charge")
    events = list(Event.objects.filter(stream=stream).order_by("seq"))
    assert [(e.type, e.actor) for e in events] == [
        ("deadletter.assigned", "user:olga"), ("deadletter.annotated", "user:olga")]  # fmt: skip
    assert events[0].payload == {"run_id": runs[0].pk, "node": "charge", "assignee": "adam"}
    assert sorted(DeadLetterAssignment.objects.values_list("run_id", "assignee")) == [
        (runs[0].pk, "adam"), (runs[1].pk, "adam")]  # fmt: skip
    note = DeadLetterNote.objects.get()
    assert (note.run_id, note.text, note.actor) == (runs[0].pk, "API bug", "user:olga")
    before = list(DeadLetterAssignment.objects.values(
        "run_id", "node_id", "assignee", "assigned_by", "assigned_at"))  # fmt: skip
    notes = list(DeadLetterNote.objects.values(*NOTE_COLUMNS))
    DeadLetterAssignment.objects.all().delete()
    DeadLetterNote.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    columns = ("run_id", "node_id", "assignee", "assigned_by", "assigned_at")
    assert list(DeadLetterAssignment.objects.values(*columns)) == before
    assert list(DeadLetterNote.objects.values(*NOTE_COLUMNS)) == notes
    # Taking it back removes the row, and the rebuild agrees.
    client.post(reverse("runs:dead_letters_assign"), {"step": steps[:1], "assignee": ""})
    assert DeadLetterAssignment.objects.count() == 1
    call_command("rebuild_projections", stdout=io.StringIO())
    assert DeadLetterAssignment.objects.count() == 1


def test_triage_of_an_unknown_person_or_step_records_nothing(client, olga, payments, eager_celery):
    _, runs = refused_charges(olga, payments, eager_celery)
    login(client, olga)
    good = f"{runs[0].pk}:charge"
    cases = [
        ("runs:dead_letters_assign", {"step": [good], "assignee": "nobody-here"}, "Nobody active"),
        ("runs:dead_letters_assign", {"step": [good, "999999:charge"], "assignee": "olga"},
         "Not a dead letter"),
        ("runs:dead_letters_annotate", {"step": [good], "text": "   "}, "Write the note"),
        ("runs:dead_letters_annotate", {"step": ["x:y"], "text": "hi"}, "Not a step"),
        ("runs:dead_letters_annotate", {"text": "hi"}, "Select the dead letters"),
    ]  # fmt: skip
    for name, data, message in cases:
        response = client.post(reverse(name), data, follow=True)
        assert response.status_code == 200 and message in response.content.decode(), name
    assert not Event.objects.filter(stream__startswith=triage.STREAM_PREFIX).exists()
    assert not DeadLetterAssignment.objects.exists() and not DeadLetterNote.objects.exists()


def test_discard_requires_a_reason(client, olga, payments, eager_celery):
    _, (run, _) = refused_charges(olga, payments, eager_celery)
    login(client, olga)
    page = reverse("runs:dead_letter", args=[run.pk, "charge"])
    url = reverse("runs:discard", args=[run.pk, "charge"])
    response = client.post(url, {"reason": "  ", "next": page})
    assert response.status_code == 302 and response.url == page
    # Back to a page of this site only: another site's address is ignored.
    response = client.post(url, {"reason": "", "next": "https://evil.example/"})
    assert response.url == reverse("runs:detail", args=[run.pk])
    assert Step.objects.get(run=run, node_id="charge").status == decider.DEAD_LETTERED
    with eager_celery():
        client.post(url, {"reason": "duplicate order", "next": page})
    run.refresh_from_db()
    assert run.status == decider.RUN_FAILED
    discarded = Event.objects.get(stream=run.stream, type="step.discarded")
    assert discarded.actor == "user:olga" and discarded.payload["reason"] == "duplicate order"


def test_edit_and_replay_validates_and_records_the_edit(client, olga, payments, eager_celery):
    _, (run, _) = refused_charges(olga, payments, eager_celery)
    login(client, olga)
    page = reverse("runs:dead_letter", args=[run.pk, "charge"])
    url = reverse("runs:replay", args=[run.pk, "charge"])
    response = client.post(url, {"edited_input": "{not json", "next": page}, follow=True)
    assert "Not valid JSON" in response.content.decode()
    assert Step.objects.get(run=run, node_id="charge").status == decider.DEAD_LETTERED
    edited = dict(Step.objects.get(run=run, node_id="charge").input)
    edited["json_body"] = {**edited["json_body"], "amount": 5}
    with eager_celery():
        client.post(url, {"edited_input": json.dumps(edited), "next": page})
    run.refresh_from_db()
    assert run.status == decider.RUN_SUCCEEDED
    replayed = Event.objects.get(stream=run.stream, type="step.replayed")
    assert replayed.actor == "user:olga" and replayed.payload["edited_input"] == edited


def test_the_bulk_preview_names_runs_versions_and_keys(client, olga, payments, eager_celery):
    _, runs = refused_charges(olga, payments, eager_celery)
    billing(olga, payments, eager_celery)  # another group, not in this preview
    group = deadletters.inbox_groups(deadletters.DeadLetterFilters())[0][0]
    login(client, olga)
    response = client.get(reverse("runs:dead_letters_preview"), {"group": group.key})
    page = response.content.decode()
    assert response.status_code == 200
    assert "<strong>2</strong> runs resume" in page and "charges version 1 (2 runs)" in page
    for run in runs:
        assert Step.objects.get(run=run, node_id="charge").idempotency_key in page
    assert "http.request" in page and "idempotent" in page
    # The same by picked steps; a step that is not one is named.
    response = client.get(reverse("runs:dead_letters_preview"),
                          {"step": [f"{runs[0].pk}:charge", "junk"]}, follow=True)  # fmt: skip
    page = response.content.decode()
    assert "<strong>1</strong> run resume" in page and "&#x27;junk&#x27; is not a step" in page
    empty = client.get(reverse("runs:dead_letters_preview"), follow=True).content.decode()
    assert "Select the dead letters to replay." in empty
    gone = client.get(reverse("runs:dead_letters_preview"), {"group": "1-nothex"}, follow=True)
    assert "That group does not exist (any more)." in gone.content.decode()


def test_a_group_replays_after_the_api_is_fixed(client, olga, payments, eager_celery):
    flow = charge_flow(olga, payments)
    control(payments, fail_next=2, fail_status=400)
    runs = [start(flow, eager_celery, order_id=f"F-{n}", amount=5) for n in range(2)]
    keys = {Step.objects.get(run=run, node_id="charge").idempotency_key for run in runs}
    login(client, olga)
    with eager_celery():
        client.post(reverse("runs:dead_letters_replay"),
                    {"step": [f"{run.pk}:charge" for run in runs]})  # fmt: skip
    assert set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True)) \
        == {decider.RUN_SUCCEEDED}  # fmt: skip
    assert {key for order in report(payments)["orders"].values() for key in order["keys"]} == keys


def test_exports_stream_csv_and_jsonl_with_the_same_filters(client, olga, payments, eager_celery):
    _, runs = refused_charges(olga, payments, eager_celery)
    refused_charges(
        olga, payments, eager_celery, flow=charge_flow(olga, payments, "billing"), count=1
    )
    triage.dead_letters_assign(steps=[(runs[0].pk, "charge")], assignee="olga", actor="user:olga")
    login(client, olga)
    response = client.get(reverse("runs:dead_letters_csv"), {"flow": "charges"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["run_id"]) for row in rows] == [run.pk for run in runs]
    assert rows[0]["assignee"] == "olga" and rows[0]["critical"] == "False"
    assert (
        rows[0]["idempotency_key"]
        == Step.objects.get(run=runs[0], node_id="charge").idempotency_key
    )
    assert "answered 422" in rows[0]["signature_text"]
    response = client.get(reverse("runs:dead_letters_jsonl"))
    assert response.streaming
    lines = b"".join(response.streaming_content).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and {r["flow"] for r in records} == {"charges", "billing"}
    assert records[0]["age_seconds"] > 0 and records[0]["dead_since"].startswith("2026-11-23")
