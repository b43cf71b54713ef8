"""The inbox websocket through the ASGI application `make run` serves with
uvicorn (platform/Procfile): routing, session authentication, the origin
check, and a change announced over the Redis channel layer."""

import pytest
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from runs import driver
from tests.approval_helpers import INPUT, approval_flow, reviewer

# Websocket tests share one xdist process and run one after another: the
# channel layer and its Redis database are per process.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("channels")]


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_a_logged_in_reviewer_hears_of_a_new_task(asgi_server, olga, settings):
    settings.LEDGERFLOW_LIVE_UPDATES = "channels"
    flow = approval_flow(olga)
    headers = {"Cookie": session_cookie(reviewer("rita"))}
    with connect(f"ws://{asgi_server}/ws/approvals/", additional_headers=headers,
                 origin=f"http://{asgi_server}", open_timeout=5) as websocket:  # fmt: skip
        driver.start_run(flow=flow, input=INPUT, actor="user:olga")
        assert websocket.recv(timeout=5) == '{"event": "approvals-changed"}'


def test_a_socket_from_another_origin_is_refused(asgi_server, olga):
    headers = {"Cookie": session_cookie(reviewer("rita"))}
    with pytest.raises(InvalidStatus):
        connect(f"ws://{asgi_server}/ws/approvals/", additional_headers=headers,
                origin="http://evil.example", open_timeout=5)  # fmt: skip
