from django.apps import AppConfig
from django.conf import settings

from runs.ground.redaction import register_secret_provider


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs and the event store"

    def ready(self) -> None:
        # Imported here: they import models, which load only after every
        # app's models are registered. The tasks are imported so that every
        # process (web too) has them registered: the driver sends them by
        # name (runs/wakeups.py).
        from runs import projection, tasks, triage  # noqa: F401
        from runs.ground.projectors import register_projector, register_rebuild

        # The platform's own keys must never reach an event, even by accident.
        register_secret_provider(lambda: [settings.SECRET_KEY, *settings.LEDGERFLOW_SECRET_KEYS])
        # Runs are derived from events that name flow versions.
        register_rebuild("runs", projection.rebuild, after=("flows",))
        # Dead-letter triage (assignments, notes) has streams of its own.
        register_projector(triage.STREAM_PREFIX, triage.project_events)
        register_rebuild("dead-letter triage", triage.rebuild, after=("runs",))
