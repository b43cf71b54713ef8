from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        # Imported here: they import models, which load only after every
        # app's models are registered.
        from approvals import projection
        from runs.ground.projectors import register_projector, register_rebuild

        # Approval facts recorded by the engine (a request, a decision that
        # ends a wait) and a run's end reach the task table in the same commit.
        register_projector(projection.SUBSCRIBED, projection.project)
        register_rebuild("approval tasks", projection.rebuild, after=("runs",))
        register_rebuild("business calendars", projection.rebuild_calendars)
