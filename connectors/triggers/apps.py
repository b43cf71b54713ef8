from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "connectors.triggers"
    label = "triggers"
    verbose_name = "Triggers"
