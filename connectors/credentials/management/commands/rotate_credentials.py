"""Re-encrypt every credential with the newest key in LEDGERFLOW_SECRET_KEYS.

Put the new key first and keep the old ones after it, run this, then drop the
old keys: each credential gets a ``credential.rotated`` event holding the new
token, so the log and the rows stop depending on the old key.
"""

from django.core.management.base import BaseCommand, CommandError

from connectors.credentials import store as credentials
from connectors.credentials.models import Credential


class Command(BaseCommand):
    help = "Re-encrypt every credential with the newest key (an event each)."

    def handle(self, *args, **options):
        failed = []
        rotated = 0
        for credential in Credential.objects.order_by("pk"):
            try:
                credentials.credential_rotate(credential=credential)
            except credentials.CredentialError as exc:
                failed.append(str(exc))
                continue
            rotated += 1
        self.stdout.write(f"{rotated} credential(s) re-encrypted with the newest key")
        if failed:
            raise CommandError("; ".join(failed))
