"""Backfills: a scheduled flow run for its past fire times, throttled, one
run per UTC instant whoever fires it, cancellable as a group, and leaving
the live schedule's sweep exactly as it was."""

import datetime as dt
import io
import threading

import pytest
from django.core.management import call_command
from django.urls import reverse

from connectors.triggers import backfills, schedules, tasks
from connectors.triggers.configs import ScheduleConfig
from connectors.triggers.models import Backfill, Binding, Receipt
from flows import services
from runs import decider
from runs.ground import clock
from runs.ground.models import Event
from runs.models import Run
from tests.conftest import login
from tests.engine_helpers import transform
from tests.trigger_helpers import pause, triggered_flow, wait_until, webhook

UTC = dt.UTC


def at(*parts) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def hourly_flow(olga, published_at: dt.datetime, *, slug: str = "nightly", slow: bool = False):
    """An hourly UTC schedule; ``slow`` runs wait ten minutes on a delay
    (in flight until the recovery sweep fires the timer), others are pure
    steps that finish as they start."""
    trigger = {"type": "trigger.schedule", "config": {"cron": "0 * * * *", "timezone": "UTC"}}
    nodes = [transform("seen", at="{{ trigger.fire_time }}")]
    if slow:
        nodes.insert(0, {"id": "wait", "type": "delay", "config": {"seconds": 600}})
    with clock.frozen_at(published_at):
        return triggered_flow(olga, trigger, *nodes, slug=slug)


def live_sweep(moment: dt.datetime) -> dict:
    with clock.frozen_at(moment):
        return schedules.sweep(moment)


def live_fires(flow) -> list[str]:
    """Fire times of the runs the live sweep started."""
    runs = Run.objects.filter(flow=flow, started_by="schedule")
    return sorted(r.input["fire_time"] for r in runs)


def backfill_runs(backfill):
    return Run.objects.filter(
        flow_id=backfill.flow_id, started_by=f"schedule:backfill-{backfill.pk}"
    )


def in_flight(backfill) -> int:
    return backfill_runs(backfill).filter(status__in=decider.RUN_UNFINISHED).count()


def request(flow, olga, eager_celery, now, **args) -> Backfill:
    with clock.frozen_at(now), eager_celery():
        return backfills.backfill_request(flow, actor=olga, **args)


def test_a_backfill_over_30_days_of_an_hourly_schedule_overlapping_5_live_fires_starts_715_runs(
    olga, eager_celery
):
    flow = hourly_flow(olga, at(2026, 6, 1, 0, 30))
    live_sweep(at(2026, 6, 1, 5, 0, 30))  # 01:00 to 05:00 fire live
    assert live_fires(flow) == [f"2026-06-01T0{h}:00:00Z" for h in range(1, 6)]
    now = at(2026, 6, 1, 5, 10)
    # 30 days of hours, both ends included: 720 fire times, 5 of them live.
    args = {"start": at(2026, 5, 2, 6, 0), "end": at(2026, 6, 1, 5, 0), "max_in_flight": 50}
    with clock.frozen_at(now):
        plan = backfills.plan(flow, **args)
    assert (len(plan.instants), len(plan.already), plan.to_run) == (720, 5, 715)
    assert [r.key for r in plan.listed] == live_fires(flow)
    backfill = request(flow, olga, eager_celery, now, **args)

    runs = list(backfill_runs(backfill))
    assert len(runs) == 715
    fired = [r.input["fire_time"] for r in Run.objects.filter(flow=flow)]
    assert len(fired) == len(set(fired)) == 720
    assert all(r.input["backfill"] == backfill.pk and r.input["late"] for r in runs)
    assert {r.status for r in runs} == {"succeeded"}
    backfill.refresh_from_db()
    assert backfill.status == "finished"
    assert backfill.summary == {"started": 715, "succeeded": 715, "failed": 0, "cancelled": 0}
    assert backfills.progress(backfill)["pending"] == 0
    # The live schedule goes on from its own newest fire, not from the backfill's.
    assert live_sweep(at(2026, 6, 1, 6, 0, 10))["started"] == 1
    assert live_fires(flow)[-1] == "2026-06-01T06:00:00Z"


def test_the_throttle_never_has_more_than_n_runs_in_flight(olga, eager_celery, sweep_at):
    flow = hourly_flow(olga, at(2026, 6, 2, 0, 30), slow=True)
    now = at(2026, 6, 2, 1, 0)
    backfill = request(flow, olga, eager_celery, now, start=at(2026, 6, 1, 0, 0),
                       end=at(2026, 6, 1, 9, 0), max_in_flight=3)  # fmt: skip
    seen = [in_flight(backfill)]
    order = []
    moment = now
    for _ in range(10):
        # The trigger sweep (beat's task) tops up; the recovery sweep ends the waits.
        with clock.frozen_at(moment), eager_celery():
            tasks.sweep()
        seen.append(in_flight(backfill))
        order.extend(
            r.input["fire_time"] for r in backfill_runs(backfill).order_by("id")[len(order) :]
        )
        moment += dt.timedelta(seconds=601)
        sweep_at(moment)
        seen.append(in_flight(backfill))
    with clock.frozen_at(moment), eager_celery():
        backfills.sweep()
    assert max(seen) == 3, seen
    assert backfill_runs(backfill).count() == 10
    assert order == sorted(order)  # oldest first
    backfill.refresh_from_db()
    assert backfill.status == "finished"


def test_cancelling_a_backfill_stops_its_pending_fires_and_cancels_its_runs_in_flight(
    olga, eager_celery, sweep_at
):
    flow = hourly_flow(olga, at(2026, 6, 2, 0, 30), slow=True)
    now = at(2026, 6, 2, 1, 0)
    backfill = request(flow, olga, eager_celery, now, start=at(2026, 6, 1, 0, 0),
                       end=at(2026, 6, 1, 9, 0), max_in_flight=3)  # fmt: skip
    running = list(backfill_runs(backfill).values_list("pk", flat=True))
    assert len(running) == 3 and in_flight(backfill) == 3
    with clock.frozen_at(now), eager_celery():
        assert backfills.backfill_cancel(backfill.pk, actor=olga) == 3
    assert set(Run.objects.filter(pk__in=running).values_list("status", flat=True)) == {"cancelled"}
    later = now + dt.timedelta(hours=2)
    sweep_at(later)
    with clock.frozen_at(later), eager_celery():
        backfills.sweep()
        backfills.top_up(backfill.pk)
    assert backfill_runs(backfill).count() == 3
    backfill.refresh_from_db()
    assert backfill.status == "cancelled" and backfill.ended_by == "user:olga"
    progress = backfills.progress(backfill)
    assert (progress["cancelled"], progress["pending"], progress["in_flight"]) == (3, 7, 0)
    types = list(
        Event.objects.filter(stream=backfill.stream).order_by("seq").values_list("type", flat=True)
    )
    assert types == ["backfill.requested", "backfill.cancelled"]
    with pytest.raises(backfills.BackfillError):
        backfills.backfill_cancel(_finished_backfill(olga, eager_celery).pk, actor=olga)


def _finished_backfill(olga, eager_celery) -> Backfill:
    flow = hourly_flow(olga, at(2026, 6, 2, 0, 30), slug="other")
    return request(flow, olga, eager_celery, at(2026, 6, 2, 1, 0), start=at(2026, 6, 1, 0, 0),
                   end=at(2026, 6, 1, 2, 0), max_in_flight=2)  # fmt: skip


def test_a_backfill_before_the_first_live_fire_does_not_pull_the_live_cursor_back(
    olga, eager_celery
):
    # Published today, no live fire yet; a backfill of last month must not
    # make the live sweep catch up from last month.
    published = at(2026, 6, 1, 10, 30)
    flow, twin = hourly_flow(olga, published), hourly_flow(olga, published, slug="twin")
    backfill = request(flow, olga, eager_celery, at(2026, 6, 1, 10, 40), start=at(2026, 5, 30),
                       end=at(2026, 5, 31, 23, 0), max_in_flight=50)  # fmt: skip
    assert backfill_runs(backfill).count() == 2 * 24
    moment = at(2026, 6, 1, 13, 0, 30)
    assert live_sweep(moment) == {"started": 6, "skipped": 0, "refused": 0, "duplicate": 0}
    assert live_fires(flow) == live_fires(twin) == [
        "2026-06-01T11:00:00Z", "2026-06-01T12:00:00Z", "2026-06-01T13:00:00Z"
    ]  # fmt: skip


def test_a_backfill_never_fires_what_the_live_sweep_has_not_reached(olga, eager_celery):
    # The live sweep fired up to 03:00, then the platform was down until
    # 08:00. A backfill asked up to 08:00 stops at 03:00: 04:00 to 08:00 are
    # the live sweep's to fire (late), exactly as without the backfill.
    published = at(2026, 6, 1, 0, 30)
    flow, twin = hourly_flow(olga, published), hourly_flow(olga, published, slug="twin")
    live_sweep(at(2026, 6, 1, 3, 0, 30))
    now = at(2026, 6, 1, 8, 0, 30)
    args = {"start": at(2026, 5, 31, 22, 0), "end": at(2026, 6, 1, 8, 0), "max_in_flight": 5}
    with clock.frozen_at(now):
        plan = backfills.plan(flow, **args)
    backfill = request(flow, olga, eager_celery, now, **args)
    counts = live_sweep(now)
    assert counts == {"started": 10, "skipped": 0, "refused": 0, "duplicate": 0}
    assert live_fires(flow) == live_fires(twin)
    assert live_fires(flow)[-5:] == [f"2026-06-01T0{h}:00:00Z" for h in range(4, 9)]
    assert sorted(r.input["fire_time"] for r in backfill_runs(backfill)) == [
        "2026-05-31T22:00:00Z", "2026-05-31T23:00:00Z", "2026-06-01T00:00:00Z"
    ]  # fmt: skip
    assert plan.until == at(2026, 6, 1, 3, 0) and plan.after_cursor == 5
    assert (plan.to_run, len(plan.already)) == (3, 3)
    # The cursor is the live sweep's own newest fire.
    assert schedules.live_cursor(Binding.objects.get(flow=flow)) == at(2026, 6, 1, 8, 0)


def test_a_live_fire_racing_a_backfill_of_the_same_instant_starts_one_run(
    olga, celery_in_thread, transactional_db
):
    flow = hourly_flow(olga, at(2026, 6, 1, 10, 30))
    binding = Binding.objects.select_related("flow").get(flow=flow)
    config = ScheduleConfig.model_validate(binding.config)
    instant, now = at(2026, 6, 1, 10, 0), at(2026, 6, 1, 10, 40)
    barrier = threading.Barrier(2)
    outcomes, errors = [], []

    def racer(job):
        from django.db import connection

        try:
            barrier.wait()
            outcomes.append(job())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def backfill():
        return backfills.backfill_request(
            flow, start=instant, end=instant, max_in_flight=1, actor=olga
        )

    def live():
        # Fire as the backfill's top-up begins (right after its request
        # commits), so that both look for the instant's receipt before
        # either has committed one: the unique receipt decides.
        assert wait_until(Backfill.objects.exists, interval=0.001)
        return schedules.fire(binding, config, instant, now).status

    with clock.frozen_at(now):
        threads = [threading.Thread(target=racer, args=(job,)) for job in (backfill, live)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    assert len(outcomes) == 2
    runs = Run.objects.filter(flow=flow)
    assert [r.input["fire_time"] for r in runs] == ["2026-06-01T10:00:00Z"]
    assert Receipt.objects.filter(flow=flow).count() == 1


def test_a_rebuild_derives_the_same_backfills_and_fire_ledger(olga, eager_celery, sweep_at):
    flow = hourly_flow(olga, at(2026, 6, 2, 0, 30), slow=True)
    live_sweep(at(2026, 6, 2, 1, 0, 10))
    now = at(2026, 6, 2, 1, 10)
    cancelled = request(flow, olga, eager_celery, now, start=at(2026, 6, 1, 0, 0),
                        end=at(2026, 6, 1, 9, 0), max_in_flight=2)  # fmt: skip
    with clock.frozen_at(now), eager_celery():
        backfills.backfill_cancel(cancelled.pk, actor=olga)
    active = request(flow, olga, eager_celery, now, start=at(2026, 6, 1, 10, 0),
                     end=at(2026, 6, 2, 1, 0), max_in_flight=4)  # fmt: skip
    finished = _finished_backfill(olga, eager_celery)

    def rows():
        backfill_rows = list(Backfill.objects.order_by("pk").values())
        ledger = list(
            Receipt.objects.order_by("flow_id", "key").values(
                "flow_id", "source", "key", "run_id", "outcome", "at", "backfill_id"
            )
        )
        return backfill_rows, ledger

    before = rows()
    assert [b["status"] for b in before[0]] == ["cancelled", "active", "finished"]
    assert {r["backfill_id"] for r in before[1]} == {None, cancelled.pk, active.pk, finished.pk}
    Backfill.objects.all().delete()
    Receipt.objects.all().delete()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert rows() == before
    # The rebuilt ledger holds the throttle and the cursor where they were.
    assert in_flight(active) == 4
    with clock.frozen_at(now), eager_celery():
        assert backfills.top_up(active.pk)["started"] == 0
    live_sweep(at(2026, 6, 2, 1, 0, 20))
    assert live_fires(flow) == ["2026-06-02T01:00:00Z"]


# --- the pages ------------------------------------------------------------------


def test_the_flow_page_links_to_the_backfill_of_a_scheduled_flow_only(client, olga, rita):
    flow = hourly_flow(olga, at(2026, 6, 1, 0, 30))
    hook = triggered_flow(olga, webhook(), slug="hook")
    login(client, olga)
    link = reverse("triggers:backfill_new", args=[flow.slug])
    assert link in client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    page = client.get(reverse("flows:detail", args=[hook.slug])).content.decode()
    assert "backfill-link" not in page
    login(client, rita)
    assert (
        "backfill-link"
        not in client.get(reverse("flows:detail", args=[flow.slug])).content.decode()
    )
    assert client.get(link).status_code == 403


def test_the_page_previews_then_starts_a_backfill_and_shows_its_progress(
    client, olga, eager_celery
):
    flow = hourly_flow(olga, at(2026, 6, 1, 0, 30), slow=True)
    live_sweep(at(2026, 6, 1, 3, 0, 30))
    login(client, olga)
    url = reverse("triggers:backfill_new", args=[flow.slug])
    form = {"start": "2026-05-31T20:00", "end": "2026-06-01T02:00", "max_in_flight": "2"}
    with clock.frozen_at(at(2026, 6, 1, 3, 10)):
        preview = client.post(url, form)
    page = preview.content.decode()
    assert preview.status_code == 200
    assert 'data-testid="to-run">5<' in page and 'data-testid="already-count">2<' in page
    assert "2026-06-01T01:00:00Z" in page and "2026-06-01T02:00:00Z" in page
    assert not Backfill.objects.exists() and not Run.objects.exclude(started_by="schedule").exists()
    with clock.frozen_at(at(2026, 6, 1, 3, 10)), eager_celery():
        started = client.post(url, {**form, "confirm": "1", "expected": "5"})
    backfill = Backfill.objects.get()
    assert started.status_code == 302
    assert started.url == reverse("triggers:backfill", args=[flow.slug, backfill.pk])
    with clock.frozen_at(at(2026, 6, 1, 3, 10)):
        shown = client.get(started.url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="started">2<' in shown and 'data-testid="in-flight">2<' in shown
    assert 'data-testid="pending">3<' in shown and 'hx-trigger="every 2s"' in shown
    # A confirmation of a plan that changed since its preview starts nothing.
    with clock.frozen_at(at(2026, 6, 1, 3, 10)), eager_celery():
        again = client.post(url, {**form, "confirm": "1", "expected": "5"})
    assert again.status_code == 200 and "recorded since the preview" in again.content.decode()
    assert Backfill.objects.count() == 1
    cancel = reverse("triggers:backfill_cancel", args=[flow.slug, backfill.pk])
    with clock.frozen_at(at(2026, 6, 1, 3, 11)), eager_celery():
        assert client.post(cancel).status_code == 302
    shown = client.get(started.url).content.decode()
    assert 'data-testid="cancelled">2<' in shown and "every 2s" not in shown


BAD = [
    ({"start": "2026-06-01T02:00", "end": "2026-06-01T01:00"}, "before the start"),
    ({"start": "2026-06-01T01:00", "end": "2026-06-02T01:00"}, "into the future"),
    ({"start": "2025-05-01T00:00", "end": "2026-05-31T00:00"}, "longer than a year"),
    ({"max_in_flight": "0"}, "between 1 and 50"),
    ({"max_in_flight": "51"}, "between 1 and 50"),
    ({"max_in_flight": "many"}, "Enter a whole number"),
    ({"start": "last tuesday"}, "is not a date and time"),
    ({"start": "0001-01-01T00:00", "end": "0001-01-02T00:00"}, "before 1970"),
    ({"start": "2026-06-01T06:00", "end": "2026-06-01T07:00"}, "Choose an earlier start"),
    ({"start": "2026-06-01T04:00", "end": "2026-06-01T05:00"}, "already ran"),
    ({"start": "2026-06-01T01:00:01", "end": "2026-06-01T01:59:59"}, "no fire time"),
]


@pytest.mark.parametrize(("fields", "message"), BAD)
def test_bad_input_is_a_form_error_and_writes_nothing(client, olga, fields, message):
    flow = hourly_flow(olga, at(2026, 6, 1, 3, 30))
    live_sweep(at(2026, 6, 1, 5, 0, 30))  # 04:00 and 05:00 fired live
    login(client, olga)
    form = {"start": "2026-05-31T00:00", "end": "2026-06-01T00:00", "max_in_flight": "5"}
    form.update(fields)
    events, runs = Event.objects.count(), Run.objects.count()
    for confirm in ({}, {"confirm": "1", "expected": "1"}):
        with clock.frozen_at(at(2026, 6, 1, 12, 0)):
            response = client.post(
                reverse("triggers:backfill_new", args=[flow.slug]), {**form, **confirm}
            )
        assert response.status_code == 422
        assert message in response.content.decode()
    assert (Event.objects.count(), Run.objects.count()) == (events, runs)
    assert not Backfill.objects.exists()


def test_a_flow_without_a_schedule_cannot_be_backfilled(client, olga):
    hook = triggered_flow(olga, webhook(), slug="hook")
    login(client, olga)
    url = reverse("triggers:backfill_new", args=[hook.slug])
    assert "not triggered by a schedule" in client.get(url).content.decode()
    form = {"start": "2026-05-31T00:00", "end": "2026-06-01T00:00", "max_in_flight": "5"}
    with clock.frozen_at(at(2026, 6, 1, 12, 0)):
        response = client.post(url, {**form, "confirm": "1", "expected": "1"})
    assert (
        response.status_code == 422 and "not triggered by a schedule" in response.content.decode()
    )
    assert not Backfill.objects.exists()


def test_a_backfill_waits_while_its_flow_is_paused_and_uses_up_no_fire(
    olga, eager_celery, sweep_at
):
    flow = hourly_flow(olga, at(2026, 6, 2, 0, 30), slow=True)
    now = at(2026, 6, 2, 0, 40)
    backfill = request(flow, olga, eager_celery, now, start=at(2026, 6, 1, 0, 0),
                       end=at(2026, 6, 1, 3, 0), max_in_flight=2)  # fmt: skip
    pause(flow, olga)
    later = now + dt.timedelta(seconds=601)
    sweep_at(later)  # the two runs in flight finish their wait
    with clock.frozen_at(later), eager_celery():
        backfills.sweep()
    assert backfill_runs(backfill).count() == 2
    assert Receipt.objects.filter(flow=flow).count() == 2  # nothing refused, nothing used up
    assert backfills.progress(backfill)["pending"] == 2
    services.flow_transition(flow=flow, actor=olga, action="activate")
    with clock.frozen_at(later), eager_celery():
        backfills.sweep()
    assert sorted(r.input["fire_time"] for r in backfill_runs(backfill)) == [
        f"2026-06-01T0{h}:00:00Z" for h in range(4)
    ]
