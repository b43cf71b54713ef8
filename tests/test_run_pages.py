import json

from django.urls import reverse

from flows.models import Flow
from runs import driver
from runs.models import Run, Step
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform


def test_graph_page_saves_a_draft_explains_problems_and_publishes(client, olga, make_flow):
    flow = make_flow(olga)
    login(client, olga)
    url = reverse("flows:graph", args=[flow.slug])
    bad = chain(transform("a", x="{{ steps.ghost.output }}"))
    response = client.post(url, {"graph": json.dumps(bad), "action": "publish"})
    assert response.status_code == 422
    assert (
        "node “a”: steps.ghost is not a step before this node (earlier steps: start);"
        " no node is called ghost"
    ) in response.content.decode()
    flow.refresh_from_db()
    assert flow.draft_graph == bad and flow.published_version == 0
    response = client.post(url, {"graph": "{not json", "action": "save"})
    assert "Not valid JSON" in response.content.decode()
    good = chain(transform("a", x=1))
    response = client.post(url, {"graph": json.dumps(good), "action": "publish", "note": "first"})
    assert response.status_code == 302
    flow.refresh_from_db()
    assert flow.published_version == 1 and flow.versions.get().note == "first"


def test_start_a_run_from_the_flow_page_and_read_it(client, olga, rita, eager_celery):
    flow = publish(olga, chain(transform("a", doubled="{{ trigger.n * 2 }}")), slug="calc")
    login(client, olga)
    with eager_celery():
        response = client.post(reverse("flows:start_run", args=["calc"]), {"input": '{"n": 21}'})
    run = Run.objects.get(flow=flow)
    assert response.url == reverse("runs:detail", args=[run.pk])
    client.logout()
    login(client, rita)  # reviewers read runs
    page = client.get(response.url).content.decode()
    assert "succeeded" in page and "&quot;doubled&quot;: 42" in page and "step.succeeded" in page
    assert "Cancel run" not in page


def test_bad_start_input_is_an_error_message_not_a_run(client, olga):
    publish(olga, chain(transform("a", x=1)), slug="calc")
    login(client, olga)
    for bad, message in [("[1, 2]", "Enter a JSON object"), ("{oops", "Not valid JSON")]:
        page = client.post(reverse("flows:start_run", args=["calc"]), {"input": bad}, follow=True)
        assert message in page.content.decode()
    assert not Run.objects.exists()


def test_a_paused_flow_starts_nothing(client, olga, eager_celery):
    flow = publish(olga, chain(transform("a", x=1)), slug="calc")
    from flows import services

    services.flow_transition(flow=flow, actor=olga, action="pause")
    login(client, olga)
    page = client.post(reverse("flows:start_run", args=["calc"]), {"input": "{}"}, follow=True)
    assert "is paused; it starts no runs" in page.content.decode()
    assert not Run.objects.exists()


def test_a_draft_flow_starts_nothing_and_says_what_activation_needs(client, olga):
    publish(olga, chain(transform("a", x=1)), slug="calc", active=False, failure_mode="")
    login(client, olga)
    page = client.get(reverse("flows:detail", args=["calc"])).content.decode()
    assert "Start run" not in page and "it needs a failure mode first" in page
    page = client.post(reverse("flows:start_run", args=["calc"]), {"input": "{}"}, follow=True)
    text = page.content.decode()
    assert "“calc” is a draft; it starts no runs until it is activated" in text
    assert "(it needs a failure mode first)." in text
    assert not Run.objects.exists()


def test_replay_and_discard_from_the_run_page(client, olga, eager_celery):
    flow = publish(olga, chain(transform("a", x="{{ trigger.value.deep }}")), slug="calc")
    login(client, olga)
    with eager_celery():
        client.post(reverse("flows:start_run", args=["calc"]), {"input": "{}"})
    run = Run.objects.get(flow=flow)
    assert Step.objects.get(run=run, node_id="a").status == "dead_lettered"
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "Replay" in page and "trigger has no field value (it is empty)" in page
    edited = json.dumps({"fields": {"x": "fixed"}})
    with eager_celery():
        client.post(reverse("runs:replay", args=[run.pk, "a"]), {"edited_input": edited})
    run.refresh_from_db()
    assert run.status == "succeeded" and run.output == {"a": {"x": "fixed"}}
    page = client.post(reverse("runs:discard", args=[run.pk, "a"]), {"reason": "x"}, follow=True)
    assert "Cannot discard" in page.content.decode()
    assert Flow.objects.get(pk=flow.pk).published_version == 1


def test_dead_letter_page_replays_many_at_once(client, olga, rita, eager_celery):
    flow = publish(olga, chain(transform("a", x="{{ trigger.v.deep }}")), slug="calc")
    with eager_celery():
        runs = [driver.start_run(flow=flow, input={}, actor="u") for _ in range(3)]
    login(client, rita)
    page = client.get(reverse("runs:dead_letters")).content.decode()
    # One group (one signature), its three rows; a reviewer cannot replay.
    assert page.count("trigger has no field v (it is empty)") == 1 + 3
    assert "Preview replay" not in page
    client.logout()
    login(client, olga)
    flow = publish(olga, chain(transform("a", x="{{ trigger.v.deep | default(1) }}")), slug="calc")
    chosen = [f"{run.pk}:a" for run in runs[:2]] + ["junk"]
    with eager_celery():
        response = client.post(reverse("runs:dead_letters_replay"), {"step": chosen}, follow=True)
    text = response.content.decode()
    assert "Replayed 2 dead letters." in text and "&#x27;junk&#x27; is not a step" in text
    # Replays run the run's own pinned version, so the same error recurs: the
    # fix reaches old runs through "replay as new run" on the newest version.
    assert Step.objects.filter(status="dead_lettered").count() == 3


def test_replay_and_resume_buttons(client, olga, eager_celery):
    flow = publish(olga, chain(transform("a", x="{{ trigger.v.deep }}")), slug="calc")
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    driver.discard_dead_letter(run.pk, "a", actor="user:olga", reason="bad input")
    login(client, olga)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "Resume from failed step" in page and "Replay as new run" in page
    with eager_celery():
        response = client.post(reverse("runs:replay_run", args=[run.pk]), {"version": "same"})
    new = Run.objects.exclude(pk=run.pk).get()
    assert response.url == reverse("runs:detail", args=[new.pk])
    refused = client.post(reverse("runs:resume", args=[new.pk]), follow=True)
    assert "only a failed run can be resumed" in refused.content.decode()


def poll(client, run, target="run-live"):
    """What the run page's 2-second poll asks for."""
    return client.get(
        reverse("runs:detail", args=[run.pk]), HTTP_HX_REQUEST="true", HTTP_HX_TARGET=target
    )


def test_the_poll_of_a_waiting_run_holds_its_target_badge_and_actions(
    client, olga, eager_celery, settings
):
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"  # the embedded default
    flow = publish(olga, chain(transform("a", x="{{ trigger.value.deep }}")), slug="calc")
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    run.refresh_from_db()
    assert run.status == "waiting"
    login(client, olga)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert 'hx-select="#run-live"' in page and 'hx-target="#run-live"' in page
    for target in ("run-live", "run-body"):  # "run-body": pages loaded before the fix
        response = poll(client, run, target)
        assert response.status_code == 200
        fragment = response.content.decode()
        assert not fragment.lstrip().startswith("<!DOCTYPE")
        # The element the poll selects, still polling, with the badge, the
        # steps and events, and every action on the dead letter.
        assert '<div id="run-live" hx-get=' in fragment
        assert '<span class="pill run-waiting">waiting</span>' in fragment
        assert 'id="run-body"' in fragment and "<h2>Steps</h2>" in fragment
        assert "step.dead_lettered" in fragment and "Cancel run" in fragment
        for action in ("edit input", ">Replay</button>", ">Discard</button>"):
            assert action in fragment
        assert 'id="dead-letter-a" hx-preserve="true"' in fragment


def test_the_poll_of_a_finished_run_updates_the_badge_and_stops(client, olga, eager_celery):
    flow = publish(olga, chain(transform("a", x="{{ trigger.value.deep }}")), slug="calc")
    with eager_celery():
        run = driver.start_run(flow=flow, input={}, actor="u")
    driver.discard_dead_letter(run.pk, "a", actor="user:olga", reason="bad input")
    login(client, olga)
    fragment = poll(client, run).content.decode()
    assert '<div id="run-live">' in fragment  # no hx-get: the poll ends here
    assert '<span class="pill run-failed">failed</span>' in fragment
    assert "Resume from failed step" in fragment and "Replay as new run" in fragment
