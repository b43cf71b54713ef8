"""Drift: a response that no longer matches the shape a flow declared.

The step still succeeds (the remote answered), but the flow's owner should
know before a later step trips on a missing field. Each mismatch is a
``connector.drift`` event on the flow's stream, appended in its own small
transaction after the call, holding where the shape broke and never the
response itself.
"""

import json
import logging
from typing import Any

import jsonschema
from django.db import DatabaseError, transaction

from connectors.base import Context
from runs.ground.eventstore import append
from runs.models import Run

log = logging.getLogger(__name__)

DRIFT_EVENT = "connector.drift"


def check_schema(schema: dict) -> None:
    """Raise ValueError if ``schema`` is not a usable JSON Schema."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"expect_schema is not a valid JSON Schema: {exc.message}") from None


def _where(error: jsonschema.ValidationError) -> str:
    return "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
    )


def mismatch(schema: dict, document: Any) -> str | None:
    """Where ``document`` breaks ``schema``, in words built from the schema
    alone: jsonschema's own messages quote the offending value, and a
    response value (a name, an address, a token) has no place in the log."""
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is None:
        return None
    where = _where(error)
    if error.validator == "required" and isinstance(document, dict | list):
        target = document
        for part in error.absolute_path:
            target = target[part]
        missing = [name for name in error.validator_value if name not in target]
        return f"{where}: missing required {', '.join(map(str, missing))}"
    expected = json.dumps(error.validator_value, sort_keys=True, default=str)
    if len(expected) > 200:
        expected = expected[:200] + "…"
    return f"{where}: does not satisfy {error.validator} {expected}"


def record_drift(ctx: Context, *, connector: str, message: str) -> None:
    """Append a ``connector.drift`` event to the step's flow; a failure to
    record it is logged and never fails the step that did succeed."""
    try:
        with transaction.atomic():
            flow_id = Run.objects.filter(pk=ctx.run_id).values_list("flow_id", flat=True).first()
            if flow_id is None:
                return
            append(
                f"flow:{flow_id}",
                DRIFT_EVENT,
                {
                    "flow_id": flow_id,
                    "run_id": ctx.run_id,
                    "node": ctx.node_id,
                    "attempt": ctx.attempt,
                    "connector": connector,
                    "message": message,
                },
                actor="system:engine",
            )
    except DatabaseError as exc:
        log.warning("could not record drift of run %s step %s: %s", ctx.run_id, ctx.node_id, exc)
