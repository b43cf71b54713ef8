"""Structured logs (LOG_FORMAT=json): one JSON object per line, carrying the
run, step and flow a line is about. Checked on a real Celery worker process
executing a step on the embedded default, and on a webhook's intake."""

import io
import json
import logging
import subprocess
import sys

import pytest

from config.logjson import JsonFormatter
from runs.ground.logcontext import log_context
from runs.models import Run
from tests.processes import (
    ORDERS_RUNS,
    ROOT,
    embedded_env,
    embedded_orders,
    sqlite_rows,
    start_order,
    start_worker,
    terminate_group,
    wait_until,
)
from tests.test_webhooks import hook_url, post_json
from tests.trigger_helpers import triggered_flow, webhook


def json_lines(text: str) -> list[dict]:
    """The log's JSON lines; the worker's start-up banner is printed, not logged."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_a_worker_logs_json_lines_naming_the_run_step_and_flow(tmp_path):
    with embedded_orders(tmp_path, LOG_FORMAT="json") as (env, _payments):
        log_path = tmp_path / "worker.log"
        worker = start_worker(env, log_path, concurrency=1)
        try:
            start_order(env, tmp_path, {"order_id": "j-1", "amount": 2})
            run_id = sqlite_rows(tmp_path, ORDERS_RUNS.replace("COUNT(*)", "r.id"))[0][0]

            def charged() -> list[dict]:
                return [
                    line
                    for line in json_lines(log_path.read_text())
                    if "runs.tasks.execute_step" in line["message"]
                    and "succeeded" in line["message"]
                    and line["step"] == "charge"
                ]

            lines = wait_until(charged, timeout=60, what="the charge step's log line")
        finally:
            terminate_group(worker)
    assert lines[0]["run_id"] == run_id
    assert lines[0]["flow"] == "orders"
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "celery.app.trace"
    every = json_lines(log_path.read_text())
    # A line outside any task (the worker saying it is ready) names no run.
    ready = [line for line in every if line["message"].endswith("ready.")]
    assert ready and ready[0]["run_id"] is None and ready[0]["flow"] is None


@pytest.fixture
def json_log():
    """The real formatter on a handler of the root logger, for one test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_webhook_intake_lines_name_the_flow_and_the_run_started(client, olga, json_log):
    flow = triggered_flow(olga, webhook(), slug="hooks")
    response = post_json(client, hook_url(flow), {"order": "A-1"})
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run_id"])
    lines = [line for line in json_lines(json_log.getvalue()) if line["logger"].endswith("intake")]
    assert lines == [
        {**lines[0], "message": f"webhook delivery started run {run.pk}",
         "run_id": run.pk, "flow": "hooks", "step": None},
    ]  # fmt: skip
    # The context ends with the delivery: later lines name nothing.
    logging.getLogger("ledgerflow.test").info("after")
    assert json_lines(json_log.getvalue())[-1]["flow"] is None


def test_a_line_carries_exceptions_and_extra_fields_and_a_nested_context(json_log):
    log = logging.getLogger("ledgerflow.test")
    with log_context(flow="orders", run_id=7), log_context(step="charge"):
        try:
            raise ValueError("card declined")
        except ValueError:
            log.exception("charge failed", extra={"attempt": 2})
    line = json_lines(json_log.getvalue())[-1]
    assert (line["flow"], line["run_id"], line["step"], line["attempt"]) == (
        "orders",
        7,
        "charge",
        2,
    )
    assert line["message"] == "charge failed" and "ValueError: card declined" in line["exception"]


def test_an_unknown_log_format_stops_start_up_naming_the_variable(tmp_path):
    env = embedded_env(tmp_path, LOG_FORMAT="xml")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json, not 'xml'" in result.stderr
