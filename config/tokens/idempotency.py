"""``Idempotency-Key`` on the API's start-run and decide calls.

The first request with a key is answered and its answer kept (per person,
for ``LEDGERFLOW_IDEMPOTENCY_HOURS``); a retry with the same key and the same
request gets that answer again, without acting twice. The same key with a
different request (another call, other parameters or body) is refused with
409, and so is a retry while the first is still being answered. The key's
row is claimed before acting (a unique row per person and key), so two
concurrent retries cannot both act. Failures (4xx refusals, errors) are not
kept: the caller may fix the request and send it again with the same key.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from ninja.errors import HttpError

from config.tokens.models import IdempotentAnswer
from runs.ground import clock

HEADER = "Idempotency-Key"
MAX_KEY = 200


def _fingerprint(request: Any) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def once(
    http_request, *, operation: str, request: Any, act: Callable[[], tuple[int, Any]]
) -> tuple[int, Any]:
    """``act()`` (status, body) at most once per key; its kept answer after."""
    key = http_request.headers.get(HEADER)
    if key is None:
        return act()
    key = key.strip()
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise HttpError(400, f"{HEADER} must be 1 to {MAX_KEY} printable characters.")
    user = http_request.user
    fingerprint = _fingerprint(request)
    now = clock.now()
    kept_since = now - dt.timedelta(hours=settings.LEDGERFLOW_IDEMPOTENCY_HOURS)
    IdempotentAnswer.objects.filter(user=user, key=key, created_at__lt=kept_since).delete()
    try:
        with transaction.atomic():
            claim = IdempotentAnswer.objects.create(
                user=user, key=key, operation=operation, fingerprint=fingerprint, created_at=now
            )
    except IntegrityError:
        kept = IdempotentAnswer.objects.filter(user=user, key=key).first()
        if kept is None:  # it expired or failed in between: act afresh
            return once(http_request, operation=operation, request=request, act=act)
        if kept.operation != operation or kept.fingerprint != fingerprint:
            raise HttpError(
                409, f"This {HEADER} was used for a different request; use a new key."
            ) from None
        if kept.status == 0:
            raise HttpError(
                409, f"The first request with this {HEADER} is still being answered."
            ) from None
        http_request.idempotent_replay = True
        return kept.status, kept.body
    try:
        status, body = act()
    except BaseException:
        claim.delete()
        raise
    if 200 <= status < 300:
        claim.status, claim.body = status, json.loads(json.dumps(body, cls=DjangoJSONEncoder))
        claim.save(update_fields=["status", "body"])
    else:
        claim.delete()
    return status, body


def forget_expired(now: dt.datetime | None = None) -> int:
    """Drop answers older than the keeping time; the count removed."""
    now = now or clock.now()
    cutoff = now - dt.timedelta(hours=settings.LEDGERFLOW_IDEMPOTENCY_HOURS)
    removed, _ = IdempotentAnswer.objects.filter(created_at__lt=cutoff).delete()
    return removed
