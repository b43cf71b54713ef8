"""The ``connectors`` app's tables, each defined beside the code that owns it.

They keep this app's label, so the tables and the migration history in
``connectors/migrations`` are unchanged by where the classes live; importing
them here is what registers them when Django loads this app's models.
"""

from connectors.credentials.models import Credential, CredentialType
from connectors.outbound.models import Breaker, BreakerCell, RateBucket, StoreFault

__all__ = ["Breaker", "BreakerCell", "Credential", "CredentialType", "RateBucket", "StoreFault"]
