"""Structured logs: one JSON object per line, chosen with ``LOG_FORMAT=json``
(config/settings.py), for log pipelines that index fields. Every line carries
the run, step and flow it is about when they are known
(runs/ground/logcontext.py); the plain format for people stays the default.
"""

import datetime as dt
import json
import logging

from runs.ground import logcontext

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        context = logcontext.current()
        for name in logcontext.FIELDS:
            value = getattr(record, name, None)
            line[name] = value if value is not None else context.get(name)
        line.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD | set(line)
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: an ``extra`` value that is not JSON (a datetime, an id
        # object) is written as text rather than losing the whole line.
        return json.dumps(line, default=str, ensure_ascii=False)
