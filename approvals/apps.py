from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        from approvals import projection
        from runs import driver

        # Approval facts recorded by the engine (a request, a decision that
        # ends a wait, a run's end) reach the task table in the same commit.
        driver.register_projector(projection.project)
