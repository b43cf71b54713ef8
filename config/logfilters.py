"""Keep routine periodic work out of the INFO log.

Beat ticks the sweeps and the heartbeat every few seconds; Celery logs each
tick three times ("Sending due task", "Task ... received", "Task ...
succeeded"), which buries what operators need. A tick that fails still logs
at WARNING or ERROR and passes; only INFO lines naming a task of the beat
schedule are dropped."""

import logging


class RoutineTicks(logging.Filter):
    def __init__(self, name: str = ""):
        super().__init__(name)
        self._tasks: tuple[str, ...] | None = None

    def tasks(self) -> tuple[str, ...]:
        # Read lazily: the filter is built while settings are still loading.
        if self._tasks is None:
            from django.conf import settings

            schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", {})
            self._tasks = tuple(sorted({entry["task"] for entry in schedule.values()}))
        return self._tasks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(task in message for task in self.tasks())
