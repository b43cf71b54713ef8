"""What still waits in the broker's queue, so that the recovery sweep re-sends
only messages that are really lost.

Under a backlog longer than ``LEDGERFLOW_REDISPATCH_SECONDS`` every scheduled
step looked lost to the sweep, which re-sent each of them once per interval to
the tail of the very queue they waited in: the kill drill's 500 runs queued
five re-sends per charge and the backlog fed on itself (recovery 67 s instead
of 12). A step whose message still waits is not lost; one whose message a
killed worker took with it (held unacknowledged for the visibility timeout) or
that was never published is not in the queue, and is re-sent.

Only Redis can be read this way; on another transport the answer is
``None`` (unknown) and the sweep re-sends as before."""

import base64
import json
import logging

log = logging.getLogger(__name__)

# Reading a queue longer than this costs more than it saves; past it the
# sweep holds its re-sends: a re-send would wait behind the whole queue too.
MAX_READ = 20_000


class TooLong(Exception):
    pass


def waiting_work(app) -> set[tuple] | None:
    """Keys of the runs work waiting in the default queue:
    ``("execute_step", run_id, node, attempt)`` and ``("continue_run",
    run_id)``. ``None``: this transport cannot be read, or reading failed.
    Raises ``TooLong`` when the queue holds more than ``MAX_READ``."""
    queue = app.conf.task_default_queue or "celery"
    try:
        with app.connection_for_read() as connection:
            if connection.transport.driver_type != "redis":
                return None
            client = connection.default_channel.client
            if client.llen(queue) > MAX_READ:
                raise TooLong(queue)
            raw = client.lrange(queue, 0, -1)
    except TooLong:
        raise
    except Exception as exc:  # the broker is down: re-sending decides alone
        log.warning("could not read the broker's queue: %s", exc)
        return None
    return {key for key in map(_key, raw) if key is not None}


def _key(raw: bytes) -> tuple | None:
    try:
        message = json.loads(raw)
        task = message["headers"]["task"].rsplit(".", 1)[-1]
        if task not in ("execute_step", "continue_run"):
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return (task, *args)
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # not a message of ours: it waits for nothing we re-send
