from django.apps import AppConfig

# Flow events that change a flow's trigger binding.
BINDING_EVENTS = ("flow.published", "flow.webhook_token_issued", "flow.webhook_token_rotated")


class TriggersConfig(AppConfig):
    name = "connectors.triggers"
    label = "triggers"
    verbose_name = "Triggers"

    def ready(self) -> None:
        # Imported here: they import models, which load only after every
        # app's models are registered. The tasks are imported so that every
        # process (web too) has them registered: a backfill sends its top-up
        # by name (runs/wakeups.py).
        from connectors.triggers import backfills, bindings, projection, tasks  # noqa: F401
        from runs.ground.projectors import register_projector, register_rebuild

        # After the flows app's own projector (INSTALLED_APPS order): a
        # binding row refers to its flow.
        register_projector(BINDING_EVENTS, bindings.project)
        register_projector(backfills.EVENTS, backfills.project)
        register_rebuild("triggers", projection.rebuild, after=("flows",))
