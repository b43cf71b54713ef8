"""Login throttling with django-axes, and its audit trail.

- Locked out: an address after repeated failures, whatever the usernames
  (that also covers one user from one address). Lockouts are keyed on the
  connecting address only (``REMOTE_ADDR``), never on a forwarded header a
  client could forge to lock someone else out.
- A username alone is never locked (anyone could then lock the admin out
  from anywhere): after repeated failures from any addresses its logins are
  only slowed, with a capped delay the login view waits asynchronously.
- A lockout is an event on the ``auth:lockouts`` stream, and so is an
  admin's unlock (``/security/lockouts/``).
"""

import datetime as dt

from axes import utils as axes_utils
from axes.backends import AxesStandaloneBackend
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db.models import Sum
from django.dispatch import receiver
from django.utils import timezone

from runs.ground.eventstore import append

STREAM = "auth:lockouts"


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' check, for logins that come with a request (the login page).

    ``authenticate()`` without a request is code, not a visitor (a shell, a
    management command, the test client's ``login``): there is no address to
    throttle, so it is left to the next backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def cool_off() -> dt.timedelta:
    return settings.AXES_COOLOFF_TIME


def recent_failures_for(username: str) -> int:
    """Failures for this username within the cool-off, from every address."""
    if not username:
        return 0
    since = timezone.now() - cool_off()
    total = AccessAttempt.objects.filter(username=username, attempt_time__gte=since).aggregate(
        n=Sum("failures_since_start")
    )["n"]
    return total or 0


def delay_for(username: str) -> float:
    """Seconds a login for ``username`` waits: none for the first few
    failures, then doubling from a quarter second up to the cap."""
    over = recent_failures_for(username) - settings.LEDGERFLOW_LOGIN_SLOW_AFTER
    if over <= 0:
        return 0.0
    return min(settings.LEDGERFLOW_LOGIN_MAX_DELAY_SECONDS, 0.25 * 2 ** min(over - 1, 16))


@receiver(user_locked_out)
def record_lockout(sender, request, username, ip_address, **kwargs):
    # Axes signals every refused attempt once locked; the log records the
    # moment the limit was reached, not each attempt after it (an attacker
    # would otherwise write to the audit log at will).
    failures = getattr(request, "axes_failures_since_start", None)
    if failures != settings.AXES_FAILURE_LIMIT:
        return
    append(
        STREAM,
        "login.locked_out",
        {"username": (username or "")[:150], "address": ip_address, "failures": failures},
        actor="login-throttle",
    )


def current_lockouts() -> list[dict]:
    """Addresses (and the usernames tried from them) locked out now."""
    since = timezone.now() - cool_off()
    rows = (
        AccessAttempt.objects.filter(attempt_time__gte=since)
        .values("ip_address")
        .annotate(failures=Sum("failures_since_start"))
        .filter(failures__gte=settings.AXES_FAILURE_LIMIT)
        .order_by("ip_address")
    )
    lockouts = []
    for row in rows:
        attempts = AccessAttempt.objects.filter(
            ip_address=row["ip_address"], attempt_time__gte=since
        )
        lockouts.append(
            {
                "address": row["ip_address"],
                "failures": row["failures"],
                "usernames": sorted({a.username or "" for a in attempts}),
                "last": max(a.attempt_time for a in attempts),
            }
        )
    return lockouts


def unlock(address: str, *, actor: str) -> int:
    """Forget the failures from ``address``; records who unlocked it."""
    removed = axes_utils.reset(ip=address)
    append(STREAM, "login.unlocked", {"address": address, "attempts_removed": removed}, actor=actor)
    return removed
