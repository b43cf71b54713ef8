import importlib
import pkgutil

from django.apps import AppConfig

from runs.ground.redaction import register_secret_provider

# Modules of this package that are not connectors.
NOT_CONNECTORS = {
    "apps", "base", "models", "admin", "tests", "migrations", "urls", "views", "forms",
    "breakers", "ratelimits", "breaker_views", "breaker_urls", "credential_views",
    "credential_urls", "credentials", "netguard", "drift", "triggers",
}  # fmt: skip


class ConnectorsConfig(AppConfig):
    name = "connectors"

    def ready(self) -> None:
        # Every module in the package registers its connector on import, so
        # the registry is the only list of them.
        import connectors

        for module in pkgutil.iter_modules(connectors.__path__):
            if module.name not in NOT_CONNECTORS and not module.name.startswith("_"):
                importlib.import_module(f"connectors.{module.name}")

        from connectors import breakers, credentials
        from runs.ground.projectors import register_rebuild

        # Every decrypted credential value is removed from events before they
        # are hashed: a remote that echoes a token back cannot put it in the log.
        register_secret_provider(credentials.secret_values)
        register_rebuild("breakers", breakers.rebuild)
        register_rebuild("credentials", credentials.rebuild)
