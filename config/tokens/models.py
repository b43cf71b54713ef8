from django.conf import settings
from django.db import models

SCOPE_CHOICES = [
    ("read", "read"),
    ("operate", "operate"),
    ("review", "review"),
    ("admin", "admin"),
]


class ApiToken(models.Model):
    """A person's API token. The secret itself is never stored: ``digest`` is
    its SHA-256; ``prefix`` (its first characters) tells tokens apart."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=SCOPE_CHOICES)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def ref(self) -> dict:
        """How events name it."""
        return {"id": self.pk, "name": self.name}


class IdempotentAnswer(models.Model):
    """The answer given to a write sent with an ``Idempotency-Key``: the same
    key from the same person gets it again for 24 hours."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=200)
    # Which call (method and route) and a digest of its parameters and body.
    operation = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    # 0 while the first request with this key is still being answered.
    status = models.PositiveSmallIntegerField(default=0)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotent_answer_once"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotent_answer_age")]

    def __str__(self) -> str:
        return f"{self.operation} ({self.key})"


class RateWindow(models.Model):
    """Writes counted per token and window, for the embedded default (no
    Redis): every web process counts in the same row."""

    bucket = models.CharField(max_length=120, unique=True)
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.bucket}: {self.count}"
