"""The webhook benchmark's answer check (wrk's Lua response() hook) counts
a wrong answer as bad: a benchmark that could not see a wrong answer would
report the speed of errors. Against a real local server, for one second."""

import tempfile
from pathlib import Path

import pytest

from bench import webhook_flow
from tests.localserver import LocalServer, Reply

RIGHT = {"ok": True, "total": 5, "doubled": 10, "greeting": "hello bench"}


def script() -> Path:
    path = Path(tempfile.mkdtemp(prefix="lf-wrk-test-")) / "check.lua"
    path.write_text(webhook_flow.WRK_SCRIPT)
    return path


def test_the_right_answer_in_any_field_order_counts_good():
    reordered = {"greeting": "hello bench", "doubled": 10, "ok": True, "total": 5}
    with LocalServer({"/hook": lambda seen: Reply(200, reordered)}) as server:
        figures = webhook_flow.run_wrk(f"{server.url}/hook", 2, 1, script())
    assert figures["good"] > 0 and figures["bad"] == 0
    assert all(seen.method == "POST" for seen in server.seen)
    assert server.seen[0].body == b'{"a":2,"b":3,"name":"bench"}'


@pytest.mark.parametrize(
    "status, body",
    [
        (200, {**RIGHT, "total": 50}),
        (200, {**RIGHT, "greeting": "hello"}),
        (200, {k: v for k, v in RIGHT.items() if k != "ok"}),
        (202, RIGHT),
        (500, {"error": "boom"}),
    ],
)
def test_a_wrong_answer_counts_bad(status, body):
    with LocalServer({"/hook": lambda seen: Reply(status, body)}) as server:
        figures = webhook_flow.run_wrk(f"{server.url}/hook", 2, 1, script())
    assert figures["good"] == 0 and figures["bad"] > 0
    assert figures["sample"].startswith(str(status))
