from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "flows.alerts"
    # Its own tables and migrations, under the label it was created with.
    label = "alerts"
    verbose_name = "Alerts and incidents"

    def ready(self) -> None:
        # Imported here: they import models, which load only after every
        # app's models are registered. The tasks are imported so that every
        # process has them registered (the outbox is delivered by name).
        from flows.alerts import projection, reactions, tasks  # noqa: F401
        from runs.ground.projectors import register_projector, register_rebuild

        # The incidents and the outbox follow the alert.* events.
        register_projector(projection.EVENT_PREFIX, projection.project)
        # Facts recorded elsewhere that open, fold or close incidents: the
        # app that records them never imports this one.
        register_projector(reactions.WATCHED, reactions.react)
        register_rebuild("alert incidents", projection.rebuild, after=("flows",))
