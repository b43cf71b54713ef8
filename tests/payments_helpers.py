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
