from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs and the event store"

    def ready(self) -> None:
        from django.conf import settings

        from runs.ground.redaction import register_secret_provider

        # The platform's own keys must never reach an event, even by accident.
        register_secret_provider(lambda: [settings.SECRET_KEY, *settings.LEDGERFLOW_SECRET_KEYS])
