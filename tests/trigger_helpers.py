"""Flows with each kind of trigger, for the trigger tests."""

import threading
import time

from connectors.triggers.models import Binding
from flows import services
from tests.engine_helpers import publish, transform

FACTS = {"runbook": "Replay the delivery.", "failure_mode": "Orders are not picked up."}


def triggered_flow(actor, trigger: dict, *nodes: dict, slug: str, active: bool = True):
    """trigger -> nodes[0] -> nodes[1] ...; activated unless told otherwise."""
    chain = [{"id": "start", **trigger}, *(nodes or [transform("seen", ok=True)])]
    graph = {
        "nodes": chain,
        "edges": [{"from": a["id"], "to": b["id"]} for a, b in zip(chain, chain[1:], strict=False)],
    }
    return publish(actor, graph, slug=slug, active=active, owner=actor, **FACTS)


def webhook(**config) -> dict:
    return {"type": "trigger.webhook", "config": config}


def token_of(flow) -> str:
    return Binding.objects.get(flow=flow).token


def pause(flow, actor):
    return services.flow_transition(flow=flow, actor=actor, action="pause")


def retire(flow, actor):
    return services.flow_transition(flow=flow, actor=actor, action="retire")


def wait_until(condition, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


class Background:
    """Run ``target(stop)`` in a thread until the block ends."""

    def __init__(self, target):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self.error: BaseException | None = None

    def _run(self, target):
        from django.db import connection

        try:
            target(self.stop)
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=20)
        if self.error is not None:
            raise self.error
