from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    """The credentials store, its pages and its commands. Its tables keep the
    ``connectors`` label (see ``connectors/credentials/models.py``), so the
    tables and their migration history are those they always were."""

    name = "connectors.credentials"
    label = "credentials"
    verbose_name = "Credentials"

    def ready(self) -> None:
        from connectors.credentials.store import rebuild, secret_values
        from runs.ground.projectors import register_rebuild
        from runs.ground.redaction import register_secret_provider

        # Every decrypted credential value is removed from events before they
        # are hashed: a remote that echoes a token back cannot put it in the log.
        register_secret_provider(secret_values)
        register_rebuild("credentials", rebuild)
