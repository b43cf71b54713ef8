"""Rate limits on the API's writes, per token (per person for a browser's
session), counted where every web process sees the same count: Redis when
``REDIS_URL`` is set (INCR, atomic), else a row in the database (the
embedded default; SQLite takes its writer lock at BEGIN, PostgreSQL locks
the row on update).

A fixed window: ``LEDGERFLOW_API_WRITES_PER_MINUTE`` writes per minute; the
refusal says in Retry-After when the window ends. Reads are not limited.
"""

import datetime as dt
import logging
import math
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from ninja.throttling import BaseThrottle

from config.tokens.models import ApiToken, RateWindow

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_clients: dict[str, object] = {}


def caller_key(request) -> str | None:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiToken):
        return f"token:{auth.pk}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


def _redis(url: str):
    client = _clients.get(url)
    if client is None:
        import redis

        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=2)
    return client


def count(bucket: str, window_end: float) -> int:
    """Add one to ``bucket``'s count and answer the new count."""
    url = settings.REDIS_URL
    if url:
        key = f"ledgerflow:api-writes:{bucket}"
        client = _redis(url)
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expireat(key, int(window_end) + 1)
        return int(pipe.execute()[0])
    expires = dt.datetime.fromtimestamp(window_end, dt.UTC)
    with transaction.atomic():
        updated = RateWindow.objects.filter(bucket=bucket).update(count=F("count") + 1)
        if not updated:
            RateWindow.objects.filter(expires_at__lt=dt.datetime.now(dt.UTC)).delete()
            try:
                with transaction.atomic():
                    RateWindow.objects.create(bucket=bucket, count=1, expires_at=expires)
            except IntegrityError:
                RateWindow.objects.filter(bucket=bucket).update(count=F("count") + 1)
        return RateWindow.objects.get(bucket=bucket).count


class WriteThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request) -> bool:
        if request.method in SAFE_METHODS:
            return True
        who = caller_key(request)
        if who is None:
            return True
        limit = settings.LEDGERFLOW_API_WRITES_PER_MINUTE
        now = time.time()
        start = math.floor(now / WINDOW_SECONDS) * WINDOW_SECONDS
        end = start + WINDOW_SECONDS
        try:
            used = count(f"{who}:{start}", end)
        except Exception as exc:  # the store is down: do not refuse every write
            log.warning("API rate limit not counted: %s", exc)
            return True
        if used <= limit:
            return True
        request.throttle_wait = max(1.0, end - now)
        return False

    def wait(self) -> float | None:
        return None  # per request, from ``request.throttle_wait`` (config/api.py)
