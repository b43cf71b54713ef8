"""Credential rows (tables of the ``connectors`` app).

``Credential`` is the projection of the events on each ``credential:<id>``
stream; only ``connectors.credentials.store`` writes it. Secret fields are
kept only as one Fernet token (``ciphertext``); the row says which secret
fields are set, never what they hold.

The models keep the ``connectors`` app label (so the table names and the
migration history in ``connectors/migrations`` stay as they were); the
credentials sub-app owns the code around them.
"""

from django.conf import settings
from django.db import models


class CredentialType(models.TextChoices):
    BEARER = "bearer", "Bearer token"
    BASIC = "basic", "Basic auth (username and password)"
    HEADER_KEY = "header_key", "API key in a header"
    HMAC = "hmac", "HMAC request signing"
    SMTP = "smtp", "SMTP server"
    POSTGRES = "postgres", "PostgreSQL database"
    CRM_OAUTH = "crm_oauth", "CRM OAuth2 client credentials"


class Credential(models.Model):
    name = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=20, choices=CredentialType.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="credentials",
    )
    fields = models.JSONField(default=dict)  # non-secret: username, host, header name
    secret_names = models.JSONField(default=list)  # which secret fields are set
    # Host patterns the credential may be sent to ("api.example.com",
    # "*.example.com", "10.0.0.5:5432"); none: it goes nowhere.
    allowed_hosts = models.JSONField(default=list)
    ciphertext = models.TextField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # The stream's last seq: the edit page's guard against a concurrent edit.
    version = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "connectors"
        ordering = ["name"]
        permissions = [("manage_credentials", "Create, edit and delete credentials")]

    def __str__(self) -> str:
        return self.name

    @property
    def stream(self) -> str:
        return f"credential:{self.pk}"
