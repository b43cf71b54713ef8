"""The decider is pure: a fresh interpreter, with no Django settings and with
Django and every app made unimportable, imports it and decides a saga.

Run as a script, this file is that interpreter's program: it blocks the
imports, decides the saga and prints the events and the modules it loaded.
It imports only the standard library at the top for that reason.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Django, and the apps the decider must not reach, even indirectly.
FORBIDDEN = ("django", "connectors", "flows", "approvals", "celery", "pydantic")


def test_the_decider_decides_a_saga_in_an_interpreter_without_django():
    env = {key: value for key, value in os.environ.items() if key in ("LANG", "LC_ALL")}
    finished = subprocess.run(
        [sys.executable, "-I", str(Path(__file__).resolve())],
        env=env, cwd="/", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    kinds = [(kind, payload.get("node")) for kind, payload in report["events"]]
    assert kinds == [
        ("run.started", None),
        ("step.scheduled", "start"),
        ("step.started", "start"),
        ("step.succeeded", "start"),
        ("step.scheduled", "pay"),
        ("step.started", "pay"),
        ("step.succeeded", "pay"),
        ("step.scheduled", "ship"),
        ("step.started", "ship"),
        ("step.attempt_failed", "ship"),
        ("step.failed", "ship"),
        ("run.compensating", None),
        ("step.compensation_scheduled", "pay~undo"),
        ("step.started", "pay~undo"),
        ("step.succeeded", "pay~undo"),
        ("run.compensated", None),
    ]
    assert report["events"][12][1]["for"] == "pay"
    assert report["run"] == "compensated"
    assert report["steps"] == {"start": "succeeded", "pay": "compensated", "ship": "failed",
                               "pay~undo": "succeeded"}  # fmt: skip
    # Nothing outside the standard library was loaded, but the decider.
    assert report["outside_stdlib"] == ["runs", "runs.decider"], report["outside_stdlib"]
    assert "DJANGO_SETTINGS_MODULE" not in report["environ"]


# --- the fresh interpreter's program ---------------------------------------------


class _Refuse:
    """A meta path finder that refuses Django and the apps outright, so an
    import of them anywhere under the decider fails loudly."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"the decider imported {name}")
        return None


def _saga() -> dict:
    import datetime as dt

    from runs import decider

    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    retry = {"max_attempts": 1, "initial_seconds": 1.0, "multiplier": 2.0,
             "max_seconds": 10.0, "jitter": 0.0}  # fmt: skip
    document = {
        "nodes": [
            {"id": "start", "type": "trigger.manual", "config": {}, "retry": retry},
            {"id": "pay", "type": "payment", "config": {}, "retry": retry,
             "compensation": {"type": "refund", "config": {}, "retry": retry}},
            {"id": "ship", "type": "shipping", "config": {}, "retry": retry,
             "on_failure": "fail_run"},
        ],
        "edges": [{"from": "start", "to": "pay", "from_port": "out"},
                  {"from": "pay", "to": "ship", "from_port": "out"}],
    }  # fmt: skip

    def facts_of(node: dict) -> decider.NodeFacts:
        return decider.NodeFacts(is_trigger=node["type"] == "trigger.manual")

    graph = decider.Graph.from_document(document, facts_of)
    state = decider.RunState(run_id=7)
    events: list = []

    def apply(command: decider.Command) -> None:
        nonlocal state
        for event in decider.decide(state, command, graph):
            state = decider.evolve(state, event, at=now)
            events.append(event)

    def run_step(node: str, outcome: decider.Command | None = None) -> None:
        apply(decider.Claim(node, 1, {}, now))
        apply(outcome or decider.Complete(node, 1, {"done": node}))
        apply(decider.Advance())

    apply(decider.Start(input={"order": 1}, root_run_id=7, flow_id=1, version=1))
    apply(decider.Advance())
    run_step("start")
    run_step("pay")
    run_step("ship", decider.Fail("ship", 1, "no courier", retryable=False, now=now))
    run_step("pay~undo")
    return {
        "events": events,
        "run": state.status,
        "steps": {node: step.status for node, step in state.steps.items()},
    }


def _main() -> None:
    sys.meta_path.insert(0, _Refuse())
    sys.path.insert(0, str(ROOT))
    # What the interpreter loaded by itself (site's own hooks) is not the decider's.
    present = set(sys.modules)
    report = _saga()
    report["outside_stdlib"] = sorted(
        name for name in set(sys.modules) - present
        if name.split(".")[0] not in sys.stdlib_module_names
    )  # fmt: skip
    report["environ"] = sorted(os.environ)
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    _main()
