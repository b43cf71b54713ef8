"""The fake payments API's refusal mode, which the unsafe time-out drill
relies on: its listener closes after a number of charges, not only on a
clock, so a burst of charges that fits in one up window still meets a
closed port (a refused connection: nothing was sent)."""

import time

import httpx
import pytest

from fakeapi.payments import PaymentsServer


def charge(url: str, order: str) -> httpx.Response:
    return httpx.post(f"{url}/charges", json={"order_id": order, "amount": 5},
                      headers={"Idempotency-Key": f"key-{order}"}, timeout=5)  # fmt: skip


def test_the_listener_closes_after_every_n_charges_and_opens_again():
    with PaymentsServer() as server:
        refuse = {"up_seconds": 60, "down_seconds": 1.0, "every_charges": 2}
        httpx.post(f"{server.url}/control", json={"refuse": refuse}).raise_for_status()
        assert charge(server.url, "a").status_code == 201
        assert charge(server.url, "b").status_code == 201
        # The second charge ends the (minute-long) up window at once.
        deadline = time.monotonic() + 2
        while True:
            try:
                charge(server.url, "probe-" + str(time.monotonic()))
            except httpx.ConnectError:
                break
            assert time.monotonic() < deadline, "the listener never closed"
            time.sleep(0.02)
        with pytest.raises(httpx.ConnectError):
            charge(server.url, "c")
        time.sleep(1.2)  # the down window is over: listening again
        assert charge(server.url, "d").status_code == 201
        httpx.post(f"{server.url}/control", json={"refuse": None}).raise_for_status()
