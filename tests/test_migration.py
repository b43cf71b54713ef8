"""A dead-lettered run replayed in place on its flow's newest version: the
move is checked (same node ids, same ports, nothing new before a step that
ran), refused by name with nothing written, recorded as ``run.migrated``
before the step's new events, followed by the driver from then on, and
derived again by a rebuild."""

import datetime as dt
import io
import json
import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from runs import decider, driver, migration
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run, Step
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform
from tests.payments_helpers import charge_node, control, report
from tests.projection_helpers import differences, projected_rows

pytestmark = pytest.mark.django_db
START = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
FIXED = True  # the fix shipped in the new version: the charge names its currency


def charge(payments, fixed=False):
    node = charge_node(payments, retry={"max_attempts": 1})
    if fixed:
        node["config"]["json_body"]["currency"] = "EUR"
    return node


def dead_run(olga, payments, eager_celery, *nodes, slug="charges", order="M-1"):
    """A run of version 1 whose charge the API refused (an injected 400,
    final), so it waits on a dead letter."""
    flow = publish(olga, chain(*nodes), slug=slug)
    control(payments, fail_next=1, fail_status=400)
    with clock.frozen_at(START), eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": order, "amount": 7},
                               actor="user:olga")  # fmt: skip
    assert Step.objects.get(run=run, node_id="charge").status == decider.DEAD_LETTERED
    return flow, run


def events_of(run) -> list[Event]:
    return list(Event.objects.filter(stream=run.stream).order_by("seq"))


def test_a_dead_letter_replays_on_the_fixed_version_and_the_run_follows_it(
    olga, payments, eager_celery
):
    flow, run = dead_run(olga, payments, eager_celery, transform("prepare", ok=True),
                         charge(payments))  # fmt: skip
    key = Step.objects.get(run=run, node_id="charge").idempotency_key
    # Version 2: the charge names its currency (the fix), and a
    # receipt follows it.
    publish(olga, chain(transform("prepare", ok=True), charge(payments, FIXED),
                        transform("receipt", charged="{{ steps.charge.output.body.id }}")),
            slug="charges")  # fmt: skip
    before = len(events_of(run))

    with clock.frozen_at(START + dt.timedelta(minutes=5)), eager_celery():
        moved = driver.replay_on_newest(run.pk, "charge", actor="user:olga")

    assert (moved.from_version, moved.to_version) == (1, 2)
    run.refresh_from_db()
    assert run.status == decider.RUN_SUCCEEDED and run.version_number == 2
    steps = {s.node_id: s for s in Step.objects.filter(run=run)}
    assert steps["receipt"].status == decider.SUCCEEDED
    assert steps["receipt"].output["charged"].startswith("ch_")
    assert steps["charge"].idempotency_key == key  # the same effect, the same key
    assert report(payments)["orders"]["M-1"] == {"keys": [key], "charges": 1, "refunds": 0}
    new = events_of(run)[before:]
    types = [e.type for e in new]
    assert types[:3] == ["run.migrated", "step.replayed", "step.scheduled"]
    assert types.index("run.migrated") < types.index("step.started")
    migrated = new[0]
    assert migrated.actor == "user:olga"
    assert migrated.payload == {
        "from_version": 1, "to_version": 2, "node": "charge",
        "checked": ["start", "prepare", "charge"], "nodes": ["start", "prepare", "charge",
                                                             "receipt"],
        "added": ["receipt"], "dropped": [], "actor": "user:olga",
    }  # fmt: skip
    # The step ran the new version's config: the currency went out.
    assert steps["charge"].input["json_body"]["currency"] == "EUR"
    sent = [span["body"] for span in report(payments)["timeline"] if span["key"] == key]
    assert sent == [{"order_id": "M-1", "amount": 7, "currency": "EUR"}]


def test_a_run_whose_step_is_gone_is_refused_by_name_and_nothing_is_written(
    olga, payments, eager_celery
):
    flow, run = dead_run(olga, payments, eager_celery, transform("prepare", ok=True),
                         charge(payments))  # fmt: skip
    renamed = {**charge(payments, FIXED), "id": "pay"}
    publish(olga, chain(transform("prepare", ok=True), renamed), slug="charges")
    rows_before, events_before = projected_rows(), len(events_of(run))

    plan = migration.plan(run, "charge")
    assert not plan.allowed and plan.problems == [("charge", "is not in the new version")]
    with pytest.raises(migration.MigrationRefused) as refused:
        driver.replay_on_newest(run.pk, "charge", actor="user:olga")

    assert "charge is not in the new version" in str(refused.value)
    assert "version 2" in str(refused.value)
    assert len(events_of(run)) == events_before
    assert projected_rows() == rows_before


SWITCH = {"value": "{{ trigger.region }}", "cases": [{"equals": "eu", "port": "eu"}],
          "default_port": "other"}  # fmt: skip


def routed(payments, port: str, fixed=False) -> dict:
    route = {"id": "route", "type": "switch",
             "config": {**SWITCH, "cases": [{"equals": "eu", "port": port}]}}  # fmt: skip
    return {
        "nodes": [{"id": "start", "type": "trigger.manual"}, route, charge(payments, fixed)],
        "edges": [{"from": "start", "to": "route"},
                  {"from": "route", "from_port": port, "to": "charge"}],
    }  # fmt: skip


def test_a_finished_node_with_other_ports_is_refused_by_name(olga, payments, eager_celery):
    flow = publish(olga, routed(payments, "eu"), slug="routed")
    control(payments, fail_next=1, fail_status=400)
    with eager_celery():
        run = driver.start_run(flow=flow, input={"order_id": "R-1", "amount": 3,
                                                 "region": "eu"}, actor="user:olga")  # fmt: skip
    assert Step.objects.get(run=run, node_id="charge").status == decider.DEAD_LETTERED
    publish(olga, routed(payments, "europe", FIXED), slug="routed")

    with pytest.raises(migration.MigrationRefused) as refused:
        driver.replay_on_newest(run.pk, "charge", actor="user:olga")

    assert refused.value.problems == [("route", "has other ports (eu, other before, "
                                                "europe, other now)")]  # fmt: skip
    run.refresh_from_db()
    assert run.version_number == 1 and run.status == decider.RUN_WAITING


def test_a_new_node_before_a_step_that_ran_is_refused(olga, payments, eager_celery):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    publish(olga, chain(transform("check", ok=True), charge(payments, FIXED)),
            slug="charges")  # fmt: skip
    plan = migration.plan(run, "charge")
    assert plan.problems == [("charge", "comes after check in the new version, which this "
                                        "run never ran")]  # fmt: skip
    with pytest.raises(migration.MigrationRefused):
        driver.replay_on_newest(run.pk, "charge", actor="user:olga")
    assert not Event.objects.filter(stream=run.stream, type="run.migrated").exists()


def test_a_run_already_on_the_newest_version_is_told_so(olga, payments, eager_celery):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    with pytest.raises(migration.MigrationRefused) as refused:
        driver.replay_on_newest(run.pk, "charge", actor="user:olga")
    assert "already follows version 1, the newest" in str(refused.value)


def test_a_pending_node_dropped_by_the_new_version_loses_its_row_and_rebuilds_alike(
    olga, payments, eager_celery
):
    """Version 2 drops a node that never ran, adds one beside the charge
    (which moves it down the order) and two after it: the live rows
    (positions, connectors, no row of the dropped node) equal a rebuild."""
    flow, run = dead_run(olga, payments, eager_celery, charge(payments),
                         transform("old_note", x="1"))  # fmt: skip
    # An untouched run on version 1 beside it, which keeps its graph.
    publish(olga, chain(transform("audit", ok=True), charge(payments, FIXED),
                        transform("receipt", id="{{ steps.charge.output.body.id }}")),
            slug="other")  # fmt: skip
    second = chain(charge(payments, FIXED), transform("receipt", y="2"), transform("thanks", z="3"))
    second["nodes"].insert(1, transform("audit", a="1"))
    second["edges"].append({"from": "start", "to": "audit"})
    publish(olga, second, slug="charges")
    with clock.frozen_at(START + dt.timedelta(minutes=1)), eager_celery():
        moved = driver.replay_on_newest(run.pk, "charge", actor="user:olga")
    assert moved.to_version == 2
    steps = list(Step.objects.filter(run=run).order_by("position"))
    assert [(s.node_id, s.position, s.status) for s in steps] == [
        ("start", 0, "succeeded"), ("audit", 1, "succeeded"), ("charge", 2, "succeeded"),
        ("receipt", 3, "succeeded"), ("thanks", 4, "succeeded"),
    ]  # fmt: skip
    live = projected_rows()
    call_command("rebuild_projections", stdout=io.StringIO())
    rebuilt = projected_rows()
    for table in live:
        assert differences(live[table], rebuilt[table]) == [], table
    assert Run.objects.get(pk=run.pk).version_number == 2


def test_the_run_page_offers_it_and_refuses_with_the_nodes_named(
    client, olga, payments, eager_celery
):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    publish(olga, chain({**charge(payments, FIXED), "id": "pay"}), slug="charges")
    login(client, olga)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "cannot move to version 2: charge is not in the new version" in page

    response = client.post(reverse("runs:replay", args=[run.pk, "charge"]),
                           {"version": "newest"}, follow=True)  # fmt: skip
    assert response.status_code == 200
    text = response.content.decode()
    assert (
        "Not replayed on the newest version" in text and "charge is not in the new version" in text
    )
    assert not Event.objects.filter(stream=run.stream, type="run.migrated").exists()


def test_the_run_page_moves_the_run_and_says_what_it_did(client, olga, payments, eager_celery):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    key = Step.objects.get(run=run, node_id="charge").idempotency_key
    publish(olga, chain(charge(payments, FIXED)), slug="charges")
    login(client, olga)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "Replay on version 2" in page and key in page

    with eager_celery():
        response = client.post(reverse("runs:replay", args=[run.pk, "charge"]),
                               {"version": "newest"}, follow=True)  # fmt: skip
    text = response.content.decode()
    assert f"Run {run.pk} moved from version 1 to version 2" in text
    event = Event.objects.get(stream=run.stream, type="run.migrated")
    assert event.actor == "user:olga" and event.payload["actor"] == "user:olga"
    run.refresh_from_db()
    assert run.status == decider.RUN_SUCCEEDED


def test_the_dead_letter_page_explains_the_move(client, olga, payments, eager_celery):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    key = Step.objects.get(run=run, node_id="charge").idempotency_key
    publish(olga, chain(charge(payments, FIXED), transform("receipt", y="2")),
            slug="charges")  # fmt: skip
    login(client, olga)
    page = client.get(reverse("runs:dead_letter", args=[run.pk, "charge"])).content.decode()
    assert 'data-testid="newest-plan"' in page
    assert "Nodes checked: start, charge" in page and "New: receipt" in page
    assert key in page


def test_the_group_preview_on_the_newest_version_names_version_keys_and_refusals(
    client, olga, payments, eager_celery
):
    flow, ok = dead_run(olga, payments, eager_celery, charge(payments), order="G-1")
    with clock.frozen_at(START), eager_celery():
        control(payments, fail_next=1, fail_status=400)
        other = driver.start_run(flow=flow, input={"order_id": "G-2", "amount": 2},
                                 actor="user:olga")  # fmt: skip
    publish(olga, chain(charge(payments, FIXED), transform("receipt", y="2")),
            slug="charges")  # fmt: skip
    keys = {r.pk: Step.objects.get(run=r, node_id="charge").idempotency_key for r in (ok, other)}
    login(client, olga)
    inbox = client.get(reverse("runs:dead_letters")).content.decode()
    assert '&amp;version=newest">… on the newest version (2)</a>' in inbox
    steps = [f"{ok.pk}:charge", f"{other.pk}:charge"]
    preview = client.get(reverse("runs:dead_letters_preview"),
                         {"step": steps, "version": "newest"}).content.decode()  # fmt: skip
    assert "on the newest version" in preview
    assert "charges version 2 (2 runs)" in preview
    for key in keys.values():
        assert key in preview
    assert 'name="version" value="newest"' in preview

    with eager_celery():
        response = client.post(reverse("runs:dead_letters_replay"),
                               {"step": steps, "version": "newest"}, follow=True)  # fmt: skip
    text = response.content.decode()
    assert "Moved 2 runs to the newest version" in text
    for run in (ok, other):
        run.refresh_from_db()
        assert run.version_number == 2 and run.status == decider.RUN_SUCCEEDED


def test_a_group_replay_moves_what_it_can_and_names_the_refused(
    client, olga, payments, eager_celery
):
    flow, ok = dead_run(olga, payments, eager_celery, charge(payments), order="H-1")
    other_flow, stuck = dead_run(olga, payments, eager_celery, charge(payments), slug="b",
                                 order="H-2")  # fmt: skip
    publish(olga, chain(charge(payments, FIXED)), slug="charges")
    publish(olga, chain(transform("first", ok=True), charge(payments, FIXED)), slug="b")
    login(client, olga)
    steps = [f"{ok.pk}:charge", f"{stuck.pk}:charge"]
    preview = client.get(reverse("runs:dead_letters_preview"),
                         {"step": steps, "version": "newest"}).content.decode()  # fmt: skip
    assert f"Run {stuck.pk} cannot move to version 2: charge comes after first" in preview
    with eager_celery():
        response = client.post(reverse("runs:dead_letters_replay"),
                               {"step": steps, "version": "newest"}, follow=True)  # fmt: skip
    text = response.content.decode()
    assert "Moved 1 run to the newest version" in text
    assert f"Run {stuck.pk} cannot move to version 2: charge comes after first" in text
    ok.refresh_from_db()
    stuck.refresh_from_db()
    assert (ok.version_number, ok.status) == (2, decider.RUN_SUCCEEDED)
    assert (stuck.version_number, stuck.status) == (1, decider.RUN_WAITING)


def test_the_api_replays_on_the_newest_version_and_refuses_with_409(
    client, olga, payments, eager_celery
):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    flow2, stuck = dead_run(olga, payments, eager_celery, charge(payments), slug="b",
                            order="A-2")  # fmt: skip
    publish(olga, chain(charge(payments, FIXED)), slug="charges")
    publish(olga, chain({**charge(payments, FIXED), "id": "pay"}), slug="b")
    login(client, olga)
    preview = client.get(f"/api/v1/dead-letters/replay-preview?step={run.pk}:charge"
                         f"&step={stuck.pk}:charge&version=newest").json()  # fmt: skip
    assert [(p["run_id"], p["to_version"], p["allowed"]) for p in preview["letters"]] == [
        (run.pk, 2, True), (stuck.pk, 2, False)]  # fmt: skip
    assert (
        preview["letters"][0]["idempotency_key"]
        == Step.objects.get(run=run, node_id="charge").idempotency_key
    )
    assert preview["letters"][1]["problems"] == [
        {"node": "charge", "why": "is not in the new version"}
    ]

    url = f"/api/v1/runs/{stuck.pk}/steps/charge/replay"
    refused = client.post(url, json.dumps({"version": "newest"}), content_type="application/json")
    assert refused.status_code == 409
    assert "charge is not in the new version" in refused.json()["error"]["message"]

    with eager_celery():
        done = client.post(f"/api/v1/runs/{run.pk}/steps/charge/replay",
                           json.dumps({"version": "newest"}),
                           content_type="application/json")  # fmt: skip
    assert done.status_code == 200, done.content
    assert done.json() == {"run_id": run.pk, "node": "charge", "version_number": 2,
                           "migrated_from": 1, "checked": ["start", "charge"]}  # fmt: skip
    run.refresh_from_db()
    assert run.status == decider.RUN_SUCCEEDED


def test_the_api_group_replay_reports_moved_and_refused(client, olga, payments, eager_celery):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    flow2, stuck = dead_run(olga, payments, eager_celery, charge(payments), slug="b",
                            order="A-2")  # fmt: skip
    publish(olga, chain(charge(payments, FIXED)), slug="charges")
    publish(olga, chain({**charge(payments, FIXED), "id": "pay"}), slug="b")
    login(client, olga)
    body = {"steps": [f"{run.pk}:charge", f"{stuck.pk}:charge"], "version": "newest"}
    with eager_celery():
        answer = client.post("/api/v1/dead-letters/replay", json.dumps(body),
                             content_type="application/json").json()  # fmt: skip
    assert answer["replayed"] == [
        {
            "run_id": run.pk,
            "node": "charge",
            "version_number": 2,
            "migrated_from": 1,
            "checked": ["start", "charge"],
        }
    ]
    assert [(r["run_id"], r["node"]) for r in answer["refused"]] == [(stuck.pk, "charge")]
    assert "charge is not in the new version" in answer["refused"][0]["reason"]


def test_a_reviewer_may_not_replay_through_the_api(client, olga, rita, payments, eager_celery):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    publish(olga, chain(charge(payments, FIXED)), slug="charges")
    login(client, rita)
    answer = client.post(
        f"/api/v1/runs/{run.pk}/steps/charge/replay",
        json.dumps({"version": "newest"}),
        content_type="application/json",
    )
    assert answer.status_code == 403
    assert not Event.objects.filter(stream=run.stream, type="run.migrated").exists()


DRAWN_MARKS = {
    "polling": """hx-vals='{{"drawn": "{}"}}'""",
    "channels": 'data-live-url="/runs/{run}/?drawn={}"',
}


@pytest.mark.parametrize("mode", sorted(DRAWN_MARKS))
def test_an_open_run_page_reloads_once_its_run_has_moved(
    client, olga, payments, eager_celery, settings, mode
):
    """The run page's live updates (the poll, or the websocket's fetch) say
    which version its diagram shows; once the run follows another, the
    answer asks htmx to load the page again."""
    settings.LEDGERFLOW_LIVE_UPDATES = mode
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    settle = {"id": "settle", "type": "delay", "config": {"seconds": 600}}
    publish(olga, chain(charge(payments, FIXED), settle), slug="charges")
    login(client, olga)
    url = reverse("runs:detail", args=[run.pk])
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "run-live"}
    fragment = client.get(url, {"drawn": "1"}, **htmx)
    assert "HX-Refresh" not in fragment.headers
    assert DRAWN_MARKS[mode].format(1, run=run.pk) in fragment.content.decode()
    with eager_celery():
        driver.replay_on_newest(run.pk, "charge", actor="user:olga")
    stale = client.get(url, {"drawn": "1"}, **htmx)
    assert stale.headers["HX-Refresh"] == "true"
    fresh = client.get(url, {"drawn": "2"}, **htmx)
    assert "HX-Refresh" not in fresh.headers
    text = fresh.content.decode()
    assert DRAWN_MARKS[mode].format(2, run=run.pk) in text
    assert re.search(r"run.migrated</code> version 1 → 2 .*by olga", text)


def test_the_api_replays_on_the_runs_own_version_and_names_what_is_not_a_step(
    client, olga, payments, eager_celery
):
    flow, run = dead_run(olga, payments, eager_celery, charge(payments))
    publish(olga, chain(charge(payments, FIXED), transform("receipt", y="2")), slug="charges")
    login(client, olga)
    with eager_celery():
        same = client.post(
            f"/api/v1/runs/{run.pk}/steps/charge/replay",
            json.dumps({"version": "same"}),
            content_type="application/json",
        )
    assert same.json() == {"run_id": run.pk, "node": "charge", "version_number": 1,
                           "migrated_from": None, "checked": []}  # fmt: skip
    run.refresh_from_db()
    assert (run.status, run.version_number) == (decider.RUN_SUCCEEDED, 1)
    assert not Event.objects.filter(stream=run.stream, type="run.migrated").exists()
    bad = client.post("/api/v1/dead-letters/replay", json.dumps({"steps": ["charge"]}),
                      content_type="application/json")  # fmt: skip
    assert bad.status_code == 400 and "'charge'" in bad.json()["error"]["message"]
    assert client.get("/api/v1/dead-letters/replay-preview").status_code == 400
