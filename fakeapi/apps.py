from django.apps import AppConfig


class DemoConnectorsConfig(AppConfig):
    """Registers the demo and benchmark connectors (payments, inventory, CPU
    work). ``config/settings.py`` installs this app only when
    ``LEDGERFLOW_DEMO`` is on, so the product's catalogue holds none of them."""

    name = "fakeapi"
    label = "fakeapi"
    verbose_name = "Demo connectors"

    def ready(self) -> None:
        from connectors.apps import import_node_modules
        from fakeapi import connectors

        import_node_modules(connectors)
