from django.apps import AppConfig
from django.db.models.signals import post_migrate


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Flows and the inventory"

    def ready(self) -> None:
        from config.roles import ensure_roles

        post_migrate.connect(ensure_roles, dispatch_uid="ledgerflow-ensure-roles")
