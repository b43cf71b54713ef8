from django.apps import AppConfig
from django.db.models.signals import post_migrate


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Flows and the inventory"

    def ready(self) -> None:
        # Imported here, not above: models and what imports them load only
        # once every app's models are registered (Django's rule for ready()).
        from config.roles import ensure_roles
        from flows import projection
        from runs.ground.projectors import register_projector, register_rebuild

        post_migrate.connect(ensure_roles, dispatch_uid="ledgerflow-ensure-roles")
        register_projector("flow:", projection.project_events)
        # Teams first: a rebuilt flow keeps its team only if the team exists.
        register_rebuild("teams", projection.rebuild_teams)
        register_rebuild("flows", projection.rebuild, after=("teams",))
