"""Login throttling: an address is locked out after repeated failures (429,
a page that says why), another address still logs in, a username alone is
only slowed, the lockout is an audit event, and an admin can unlock."""

import time

import pytest
from django.test import Client
from django.urls import reverse

from config import throttle
from runs.ground.eventstore import verify_stream
from runs.ground.models import Event
from tests.conftest import PASSWORD, login

ATTACKER = "203.0.113.7"
OFFICE = "198.51.100.20"


@pytest.fixture(autouse=True)
def _no_waiting(settings):
    # The slowdown is tested on its own; here it would only make tests slow.
    settings.LEDGERFLOW_LOGIN_MAX_DELAY_SECONDS = 0


def attempt(username: str, password: str, address: str):
    return Client(REMOTE_ADDR=address).post(
        reverse("login"), {"username": username, "password": password}
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response.url == reverse("flows:inventory")


def test_thirty_wrong_passwords_lock_the_address_out_but_not_the_user(adam):
    answers = [attempt("adam", f"guess-{n}", ATTACKER).status_code for n in range(30)]
    assert answers[:9] == [200] * 9  # the form again, with its error
    assert set(answers[10:]) == {429}
    refused = attempt("adam", PASSWORD, ATTACKER)
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.content.decode()
    assert not logged_in(refused)
    # The right password from another address works: nobody can lock the
    # admin out from elsewhere.
    assert logged_in(attempt("adam", PASSWORD, OFFICE))


def test_an_address_is_locked_out_whatever_usernames_it_tries(adam, olga):
    for n in range(10):
        attempt(f"user-{n}", "wrong", ATTACKER)
    assert attempt("olga", PASSWORD, ATTACKER).status_code == 429
    assert logged_in(attempt("olga", PASSWORD, OFFICE))


def test_a_forwarded_header_does_not_change_the_address(adam):
    for n in range(10):
        Client(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").post(
            reverse("login"), {"username": "adam", "password": "wrong"}
        )
    spoofed = Client(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=OFFICE)
    assert (
        spoofed.post(reverse("login"), {"username": "adam", "password": PASSWORD}).status_code
        == 429
    )
    assert logged_in(attempt("adam", PASSWORD, OFFICE))


def test_the_lockout_is_an_audit_event_recorded_once(adam):
    for _ in range(25):
        attempt("adam", "wrong", ATTACKER)
    events = list(Event.objects.filter(stream=throttle.STREAM))
    assert [e.type for e in events] == ["login.locked_out"]
    assert events[0].payload == {"username": "adam", "address": ATTACKER, "failures": 10}
    assert verify_stream(throttle.STREAM) is None


def test_an_admin_sees_and_unlocks_an_address(client, adam, olga):
    for _ in range(10):
        attempt("olga", "wrong", ATTACKER)
    assert attempt("olga", PASSWORD, ATTACKER).status_code == 429
    login(client, adam)
    page = client.get(reverse("lockouts"))
    assert ATTACKER in page.content.decode() and "olga" in page.content.decode()
    response = client.post(reverse("lockout_unlock"), {"address": ATTACKER})
    assert response.status_code == 302
    assert logged_in(attempt("olga", PASSWORD, ATTACKER))
    unlocked = Event.objects.get(stream=throttle.STREAM, type="login.unlocked")
    assert unlocked.actor == "user:adam" and unlocked.payload["address"] == ATTACKER
    assert "No address is locked out." in client.get(reverse("lockouts")).content.decode()


def test_only_admins_may_unlock(client, olga):
    for _ in range(10):
        attempt("olga", "wrong", ATTACKER)
    login(client, olga)
    assert client.post(reverse("lockout_unlock"), {"address": ATTACKER}).status_code == 403
    assert attempt("olga", PASSWORD, ATTACKER).status_code == 429


def test_a_username_tried_from_many_addresses_is_slowed_never_locked(adam, settings):
    settings.LEDGERFLOW_LOGIN_SLOW_AFTER = 3
    settings.LEDGERFLOW_LOGIN_MAX_DELAY_SECONDS = 0.5
    for n in range(12):  # from twelve addresses: none of them is locked out
        assert attempt("adam", "wrong", f"192.0.2.{n}").status_code == 200
    assert throttle.delay_for("adam") == 0.5
    started = time.monotonic()
    assert logged_in(attempt("adam", PASSWORD, OFFICE))
    assert time.monotonic() - started >= 0.5
    assert throttle.delay_for("olga") == 0


def test_an_overlong_username_is_a_form_error_not_a_500(db):
    response = attempt("9" * 1900, "x", ATTACKER)
    assert response.status_code == 200
    assert "at most 150 characters" in response.content.decode()
