"""The run page's live updates, without a browser: the run's websocket
consumer (who may listen, which group it joins), the engine announcing a
run's commits over the real Redis channel layer, a run that goes on when
the layer is down, the page's two modes and its timeline with durations."""

import logging
import time

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client
from websockets.sync.client import connect

from runs import driver, live
from runs.consumers import RunConsumer
from runs.ground.models import Event
from tests.conftest import login
from tests.engine_helpers import chain, publish, transform

WAIT = {"id": "wait", "type": "delay", "config": {"seconds": 600}}


# Websocket tests share one xdist process and run one after another: the
# channel layer and its Redis database are per process.
pytestmark = pytest.mark.xdist_group("channels")


def socket(user, run_id: int) -> ApplicationCommunicator:
    """The consumer as the ASGI server's router would run it."""
    scope = {
        "type": "websocket", "path": f"/ws/runs/{run_id}/", "user": user, "headers": [],
        "url_route": {"args": (), "kwargs": {"run_id": run_id}},
    }  # fmt: skip
    return ApplicationCommunicator(RunConsumer.as_asgi(), scope)


def waiting_run(olga):
    flow = publish(olga, chain(transform("shape", n="{{ trigger.n }}"), WAIT, transform("done")))
    return driver.start_run(flow=flow, input={"n": 1}, actor="user:olga")


def first_output(user, run_id: int) -> dict:
    async def scenario():
        communicator = socket(user, run_id)
        await communicator.send_input({"type": "websocket.connect"})
        output = await communicator.receive_output(timeout=5)
        await communicator.send_input({"type": "websocket.disconnect", "code": output.get("code")})
        await communicator.wait(timeout=5)
        return output

    return async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_only_people_who_may_view_runs_listen_to_an_existing_run(olga):
    run = waiting_run(olga)
    nobody = User.objects.create_user("nobody", password="x")  # no role: no runs.view_run
    assert first_output(AnonymousUser(), run.pk) == {"type": "websocket.close", "code": 4403}
    assert first_output(nobody, run.pk) == {"type": "websocket.close", "code": 4403}
    assert first_output(olga, run.pk + 1000) == {"type": "websocket.close", "code": 4404}


@pytest.mark.django_db(transaction=True)
def test_each_commit_on_the_run_is_announced_to_its_pages_over_redis(olga, settings):
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    assert "Redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]
    run, other = waiting_run(olga), waiting_run(olga)

    async def scenario():
        from channels.db import database_sync_to_async

        communicator = socket(olga, run.pk)
        await communicator.send_input({"type": "websocket.connect"})
        assert (await communicator.receive_output(timeout=5))["type"] == "websocket.accept"
        # A commit on another run says nothing to this run's page.
        await database_sync_to_async(driver.cancel_run)(other.pk, actor="user:olga", reason="x")
        assert await communicator.receive_nothing(timeout=1)
        await database_sync_to_async(driver.cancel_run)(run.pk, actor="user:olga", reason="y")
        changed = await communicator.receive_output(timeout=5)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(timeout=5)
        return changed

    assert async_to_sync(scenario)() == {
        "type": "websocket.send",
        "text": '{"event": "run-changed"}',
    }


@pytest.mark.django_db(transaction=True)
def test_a_run_goes_on_when_the_channel_layer_is_down(olga, settings, caplog):
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    # Nothing listens on port 1: every send is refused.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    flow = publish(olga, chain(transform("shape", n="{{ trigger.n }}"), transform("done")))
    sender = live._sender()
    handled = sender.handled
    with caplog.at_level(logging.WARNING, logger="runs.live"):
        run = driver.start_run(flow=flow, input={"n": 1}, actor="user:olga")
        run.refresh_from_db()
        assert run.status == "succeeded"
        wait_for_sender(lambda: sender.handled > handled)
    assert any("could not announce a change of run" in r.getMessage() for r in caplog.records)


def wait_for_sender(done) -> None:
    for _ in range(200):
        if done():
            return
        time.sleep(0.05)
    raise AssertionError("the sender did not get to the announcement")


@pytest.mark.django_db
def test_the_page_listens_in_channels_mode_and_polls_on_the_embedded_default(
    client, olga, settings
):
    run = waiting_run(olga)
    login(client, olga)
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert f'data-live-socket="/ws/runs/{run.pk}/"' in html and "runs-live.js" in html
    assert 'hx-trigger="every 2s"' not in html
    settings.LEDGERFLOW_LIVE_UPDATES = "polling"
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in html
    assert "data-live-socket" not in html and "runs-live.js" not in html
    # A finished run neither polls nor listens.
    driver.cancel_run(run.pk, actor="user:olga", reason="done")
    for mode in ("channels", "polling"):
        settings.LEDGERFLOW_LIVE_UPDATES = mode
        html = client.get(f"/runs/{run.pk}/").content.decode()
        assert "data-live-socket" not in html and 'hx-trigger="every 2s"' not in html


@pytest.mark.django_db
def test_the_timeline_gives_offsets_and_how_long_each_attempt_and_the_run_took(olga, client):
    flow = publish(olga, chain(transform("shape", n="{{ trigger.n }}"), transform("done")))
    run = driver.start_run(flow=flow, input={"n": 1}, actor="user:olga")
    html = login(client, olga).get(f"/runs/{run.pk}/").content.decode()
    events = Event.objects.filter(stream=run.stream)
    assert html.count('<li data-seq="') == events.count()
    # Each step's attempt (the trigger's, shape's and done's), and the run,
    # end with how long they took.
    assert events.filter(type="step.succeeded").count() == 3
    assert html.count('<span class="took">took ') == 4
    assert html.count('class="muted step-took">took ') == 3
    assert "+0 ms" in html
    # Who acted, where it was not the engine: olga started the run.
    assert (
        html.count('class="muted by">by ') == 1 and '<span class="muted by">by olga</span>' in html
    )


@pytest.mark.django_db(transaction=True)
def test_a_page_socket_outlives_the_layers_blocking_pop(asgi_server, olga, settings):
    """Served as `make run` serves it, a run's socket stays open past the
    5 s the channel layer's blocking pop waits on Redis, and still hears of
    the run's next commit."""
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    run = waiting_run(olga)
    client = Client()
    client.force_login(olga)
    headers = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    with connect(f"ws://{asgi_server}/ws/runs/{run.pk}/", additional_headers=headers,
                 origin=f"http://{asgi_server}", open_timeout=5) as websocket:  # fmt: skip
        time.sleep(7)  # past one empty pop of the consumer's reader
        driver.cancel_run(run.pk, actor="user:olga", reason="done")
        assert websocket.recv(timeout=5) == '{"event": "run-changed"}'
