"""Concurrency keys: a flow whose ``settings.concurrency_key`` renders to
the same key for two runs runs them one after the other; a run that
finishes releases the next. Also the business key people find runs by."""

import hashlib
import json
from typing import Any

from django.db import connection, transaction

from runs import decider, expressions
from runs.decider import Graph
from runs.models import Run
from runs.session import run_session


class StartRefused(Exception):
    """The flow cannot start a run now; the message says why."""


CONCURRENCY_KEY_CHARS = 200


def concurrency_key(graph: Graph, input: Any) -> str:
    """The flow's ``settings.concurrency_key`` rendered from the trigger;
    "" when the flow has none. A key that cannot render refuses the start."""
    template = graph.settings.get("concurrency_key")
    if not template:
        return ""
    try:
        value = expressions.render(template, {"trigger": input})
    except expressions.ExpressionError as exc:
        raise StartRefused(
            f"The concurrency key cannot be computed from this input: {exc}."
        ) from None
    text = value if isinstance(value, str) else json_text(value)
    if len(text) > CONCURRENCY_KEY_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


BUSINESS_KEY_CHARS = 200


def business_key(graph: Graph, input: Any) -> str:
    """The flow's ``settings.business_key`` rendered from the trigger (an
    order id, a customer): "" when the flow has none or this input lacks it.
    Unlike a concurrency key it only helps people find runs, so an input
    without it still starts its run."""
    template = graph.settings.get("business_key")
    if not template:
        return ""
    try:
        value = expressions.render(template, {"trigger": input})
    except expressions.ExpressionError:
        return ""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json_text(value)
    return text.strip()[:BUSINESS_KEY_CHARS]


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def lock_key(flow_id: int, key: str) -> None:
    """Serialise arrivals (and releases) of one key, so that of two runs
    starting at once the later id always sees the earlier one and queues.
    On SQLite every write transaction already holds the database's lock."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"concurrency:{flow_id}:{key}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)]
        )


def queue_ahead(flow_id: int, key: str, run_id: int) -> bool:
    return (
        Run.objects.filter(flow_id=flow_id, concurrency_key=key, pk__lt=run_id)
        .exclude(status__in=decider.RUN_TERMINAL)
        .exists()
    )


def release_queued(flow_id: int, key: str) -> int | None:
    """Start the oldest unfinished run of ``key`` if it is queued. Called on
    the commit that finishes a run, and by the sweep as the guarantee; a
    second call finds nothing to release."""
    with transaction.atomic():
        lock_key(flow_id, key)
        first = (
            Run.objects.filter(flow_id=flow_id, concurrency_key=key)
            .exclude(status__in=decider.RUN_TERMINAL)
            .order_by("pk")
            .first()
        )
        if first is None or first.wait_reason != decider.QUEUED_CONCURRENCY:
            return None
        with run_session(first.pk, savepoint=False) as session:
            try:
                session.apply(decider.Release())
            except decider.IllegalTransition:
                session.abandon()  # released meanwhile: the row read above was stale
                return None
    return first.pk
