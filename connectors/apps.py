import importlib
import pkgutil
from types import ModuleType

from django.apps import AppConfig


def import_node_modules(package: ModuleType) -> None:
    """Import every module of a package of node types: each registers its
    connector on import, so the registry is the only list of them."""
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


class ConnectorsConfig(AppConfig):
    name = "connectors"

    def ready(self) -> None:
        from connectors import nodes

        import_node_modules(nodes)

        from connectors.outbound import breakers
        from runs.ground.projectors import register_rebuild

        register_rebuild("breakers", breakers.rebuild)
