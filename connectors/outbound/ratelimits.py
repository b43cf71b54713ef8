"""Rate limits: a token bucket per external target, shared by every worker
(a Lua script on Redis; compare-and-set rows on the embedded default).

Targets are configured in ``LEDGERFLOW_RATE_LIMITS`` ({target: {"per_second":
r, "burst": b}}); a target with no entry is not limited. A step that finds no
token is held on a durable timer (reason ``rate_limit``) until its slot:
slots are handed out 1/r apart, so a backlog drains at the rate instead of
retrying all at once. Its attempt is not spent.
"""

import datetime as dt
from dataclasses import dataclass

from django.conf import settings

from connectors.outbound import breakers
from connectors.outbound._store import WAIT, StoreDown


@dataclass(frozen=True)
class Limit:
    per_second: float
    burst: float


def limit_for(target: str) -> Limit | None:
    spec = settings.LEDGERFLOW_RATE_LIMITS.get(target)
    if not spec:
        return None
    per_second = float(spec["per_second"])
    return Limit(per_second=per_second, burst=float(spec.get("burst") or max(1.0, per_second)))


def take(target: str, *, now: dt.datetime) -> dt.datetime | None:
    """None: a token was taken, call now. Otherwise the time to try again."""
    limit = limit_for(target)
    if limit is None:
        return None
    try:
        reply = breakers.store().take(target, now.timestamp(), limit.per_second, limit.burst)
    except StoreDown as exc:
        breakers.note_fault(exc, now)
        return None
    if reply.verdict == WAIT and reply.due is not None:
        return dt.datetime.fromtimestamp(reply.due, dt.UTC)
    return None
