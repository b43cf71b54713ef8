"""The demo payments API (fakeapi.payments) as engine tests drive it: a
charge node that calls it, and its control and report endpoints."""

import httpx


def charge_node(payments, **overrides) -> dict:
    node = {
        "id": "charge",
        "type": "http.request",
        "config": {
            "method": "POST",
            "url": f"{payments.url}/charges",
            "json_body": {"order_id": "{{ trigger.order_id }}", "amount": "{{ trigger.amount }}"},
            "honours_idempotency_key": True,
            "timeout_seconds": 5,
        },
        "retry": {"max_attempts": 3, "initial_seconds": 10, "jitter": 0},
    }
    node.update(overrides)
    return node


def control(payments, **settings) -> None:
    """Script the API's next answers (``fail_next``, ``fail_status``, ...)."""
    httpx.post(f"{payments.url}/control", json=settings).raise_for_status()


def report(payments) -> dict:
    """What the API saw and did: requests, charges, refunds."""
    return httpx.get(f"{payments.url}/report").json()


def refused_charges(olga, payments, prefix: str, count: int = 2):
    """A published "charges" flow whose next ``count`` charges the fake API
    refuses (400, no retry): that many dead letters in one group. The flow,
    the runs and their charges' idempotency keys."""
    from runs import driver
    from runs.models import Step
    from tests.engine_helpers import chain, publish

    flow = publish(olga, chain(charge_node(payments, retry={"max_attempts": 1})), slug="charges")
    control(payments, fail_next=count, fail_status=400)
    runs = [driver.start_run(flow=flow, input={"order_id": f"{prefix}-{n}", "amount": 5},
                             actor="user:olga") for n in range(count)]  # fmt: skip
    keys = [Step.objects.get(run=run, node_id="charge").idempotency_key for run in runs]
    return flow, runs, keys
