"""Creating, revoking and reading API tokens. Creation and revocation are
events on the ``auth:tokens`` stream, appended before the row changes, in
the same transaction."""

import datetime as dt
import hashlib
import secrets

from django.db import transaction

from config.roles import SCOPES
from config.tokens.models import ApiToken
from flows.services import next_row_id
from runs.ground import clock
from runs.ground.eventstore import append

STREAM = "auth:tokens"
# What every token starts with, so scanners and people recognise one.
PREFIX = "lf_"
MAX_NAME = 100


class TokenRefused(Exception):
    """The request cannot make or change this token; the message says why."""


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _actor(user) -> str:
    return f"user:{user.get_username()}"


def token_create(
    *, user, name: str, scope: str, expires_at: dt.datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user`` and its secret, which is never seen again."""
    name = (name or "").strip()
    if not name:
        raise TokenRefused("Give the token a name.")
    if len(name) > MAX_NAME:
        raise TokenRefused(f"A token's name has at most {MAX_NAME} characters.")
    if scope not in SCOPES:
        raise TokenRefused(f"Choose a scope: {', '.join(SCOPES)}.")
    now = clock.now()
    if expires_at is not None and expires_at <= now:
        raise TokenRefused("The expiry must be in the future.")
    secret = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token_id = next_row_id(ApiToken)
        payload = {
            "token": {"id": token_id, "name": name},
            "user": user.get_username(),
            "scope": scope,
            "prefix": secret[:10],
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        append(STREAM, "token.created", payload, actor=_actor(user))
        token = ApiToken.objects.create(
            id=token_id,
            user=user,
            name=name,
            scope=scope,
            prefix=secret[:10],
            digest=digest_of(secret),
            created_at=now,
            expires_at=expires_at,
        )
    return token, secret


def token_revoke(*, token_id: int, user) -> ApiToken:
    """Revoke one of ``user``'s own tokens; revoking twice changes nothing."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(pk=token_id, user=user).first()
        if token is None:
            raise TokenRefused("You have no such token.")
        if token.revoked_at is not None:
            return token
        now = clock.now()
        append(STREAM, "token.revoked", {"token": token.ref(), "user": user.get_username()},
               actor=_actor(user))  # fmt: skip
        token.revoked_at = now
        token.save(update_fields=["revoked_at"])
    return token


def usable(secret: str) -> ApiToken | None:
    """The live token this secret is, with its user; None for anything else
    (unknown, revoked, expired, or its user deactivated). Records its use."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest_of(secret)).first()
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    now = clock.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    # Bookkeeping, not a change of anyone's rights: no event (a log line per
    # call would drown the audit trail); the events the call appends name it.
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
    return token
