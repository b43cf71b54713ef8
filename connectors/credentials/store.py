"""The credential store: secrets encrypted at rest, changed only by events.

Each credential is a stream ``credential:<id>``. Its events carry the secret
fields only as a Fernet token (MultiFernet over
``settings.LEDGERFLOW_SECRET_KEYS``, newest key first), so neither the log nor
the ``Credential`` row (their projection, written in the same transaction)
holds a plaintext secret. Connectors read secrets with ``credential_for`` /
``credential_secrets``; the event store's redaction learns every decrypted
value from ``secret_values``, so a secret echoed back by a remote is removed
before it is hashed into the log.
"""

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connection, transaction

from connectors.base import UnknownConnector, get, not_sent
from connectors.credentials.models import Credential, CredentialType
from connectors.outbound import allowed_hosts as hosts
from flows.models import Flow, FlowVersion
from runs.ground.eventstore import NewEvent, append_many
from runs.ground.models import Event, Stream
from runs.ground.redaction import MIN_SECRET_LENGTH

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str = "text"  # text, int or bool
    secret: bool = False
    required: bool = True
    default: Any = None


TYPE_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    CredentialType.BEARER: (FieldSpec("token", "Token", secret=True),),
    CredentialType.BASIC: (
        FieldSpec("username", "Username"),
        FieldSpec("password", "Password", secret=True),
    ),
    CredentialType.HEADER_KEY: (
        FieldSpec("header_name", "Header name", default="X-API-Key"),
        FieldSpec("key", "Key", secret=True),
    ),
    CredentialType.HMAC: (
        FieldSpec("header_name", "Signature header", default="X-Signature"),
        FieldSpec("timestamp_header", "Timestamp header", default="X-Timestamp"),
        FieldSpec("secret", "Shared secret", secret=True),
    ),
    CredentialType.SMTP: (
        FieldSpec("host", "Host"),
        FieldSpec("port", "Port", kind="int", default=587),
        FieldSpec("username", "Username", required=False, default=""),
        FieldSpec("starttls", "Use STARTTLS", kind="bool", required=False, default=True),
        FieldSpec("from_address", "Default sender", required=False, default=""),
        FieldSpec("password", "Password", secret=True, required=False),
    ),
    CredentialType.POSTGRES: (
        FieldSpec("host", "Host"),
        FieldSpec("port", "Port", kind="int", default=5432),
        FieldSpec("dbname", "Database"),
        FieldSpec("user", "User"),
        FieldSpec("password", "Password", secret=True),
    ),
    # A Salesforce-style API (connectors/nodes/crm.py): a client-credentials
    # token from ``token_url``, then calls to ``instance_url`` (the one set
    # here, not one a token answer names: the allowed hosts check both).
    CredentialType.CRM_OAUTH: (
        FieldSpec("instance_url", "Instance URL"),
        FieldSpec("token_url", "Token URL"),
        FieldSpec("client_id", "Client id"),
        FieldSpec("client_secret", "Client secret", secret=True),
    ),
}


class CredentialError(Exception):
    """A change the store refuses; the message is shown to the person."""


@dataclass(frozen=True)
class UsableCredential:
    """What a connector gets: the non-secret fields and the decrypted secrets."""

    name: str
    type: str
    fields: dict
    secrets: dict
    allowed_hosts: tuple[str, ...] = ()


# --- encryption -------------------------------------------------------------------

_fernets: dict[tuple[str, ...], MultiFernet] = {}


def _fernet() -> MultiFernet:
    keys = tuple(settings.LEDGERFLOW_SECRET_KEYS)
    if keys not in _fernets:
        _fernets[keys] = MultiFernet([Fernet(key.encode()) for key in keys])
    return _fernets[keys]


def encrypt(secrets: dict) -> str:
    return _fernet().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict:
    return json.loads(_fernet().decrypt(token.encode()))


# --- validation -------------------------------------------------------------------


def specs(type_: str) -> tuple[FieldSpec, ...]:
    if type_ not in TYPE_FIELDS:
        raise CredentialError(f"Unknown credential type {type_!r}.")
    return TYPE_FIELDS[type_]


def _coerce(spec: FieldSpec, value: Any) -> Any:
    if spec.kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise CredentialError(f"{spec.label} must be a whole number.") from None
    if spec.kind == "bool":
        return bool(value)
    return "" if value is None else str(value).strip()


def clean_fields(type_: str, given: dict) -> dict:
    """The non-secret fields of ``type_``, coerced, defaults filled."""
    cleaned = {}
    for spec in specs(type_):
        if spec.secret:
            continue
        value = given.get(spec.name)
        if value in (None, ""):
            value = spec.default
        if spec.required and value in (None, ""):
            raise CredentialError(f"{spec.label} is required.")
        cleaned[spec.name] = _coerce(spec, value)
    return cleaned


def _merge_secrets(type_: str, current: dict, given: dict) -> dict:
    """Given secrets replace current ones; a blank one keeps what is set."""
    merged = {}
    for spec in specs(type_):
        if not spec.secret:
            continue
        new = given.get(spec.name) or ""
        if new and len(new) < MIN_SECRET_LENGTH:
            # Shorter values are not redacted (they would match ordinary
            # words), so they could not be kept out of the log.
            raise CredentialError(f"{spec.label} must be at least {MIN_SECRET_LENGTH} characters.")
        value = new or current.get(spec.name) or ""
        if spec.required and not value:
            raise CredentialError(f"{spec.label} is required.")
        if value:
            merged[spec.name] = value
    return merged


# --- writes: events projected onto the row --------------------------------------


def clean_hosts(given) -> list[str]:
    try:
        return hosts.clean_patterns(given)
    except hosts.HostPatternError as exc:
        raise CredentialError(f"Allowed hosts: {exc}.") from None


def _user_ref(user) -> dict | None:
    return None if user is None else {"id": user.pk, "username": user.username}


def _actor(actor) -> str:
    return actor if isinstance(actor, str) else f"user:{actor.username}"


def _next_id() -> int:
    # The id names the stream, so it is chosen before the first event.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('connectors_credential', 'id'))")
            return cursor.fetchone()[0]
    last = Credential.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return last + 1


def _write(credential_id: int, type_: str, payload: dict, actor) -> Credential | None:
    [event] = append_many(
        [
            NewEvent(
                stream=f"credential:{credential_id}",
                type=type_,
                payload={"credential_id": credential_id, **payload},
                actor=_actor(actor),
            )
        ]
    )
    row = project(event)
    # The redaction list must know a new secret before anything can echo it.
    forget_cached_secrets()
    transaction.on_commit(forget_cached_secrets)
    return row


@transaction.atomic
def credential_create(
    *, actor, name: str, type: str, owner=None, fields: dict, secrets: dict,
    allowed_hosts: list[str] | str | None = None,
) -> Credential:  # fmt: skip
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise CredentialError(
            "A name is letters, digits, dots, dashes and underscores (up to 100), "
            "starting with a letter or digit."
        )
    if Credential.objects.filter(name=name).exists():
        raise CredentialError(f"A credential named {name!r} already exists.")
    cleaned = clean_fields(type, fields)
    merged = _merge_secrets(type, {}, secrets)
    payload = {
        "name": name,
        "type": type,
        "owner": _user_ref(owner),
        "fields": cleaned,
        "allowed_hosts": clean_hosts(allowed_hosts),
        "secret_names": sorted(merged),
        "ciphertext": encrypt(merged),
    }
    try:
        with transaction.atomic():
            return _write(_next_id(), "credential.created", payload, actor)
    except IntegrityError:
        raise CredentialError(f"A credential named {name!r} already exists.") from None


@transaction.atomic
def credential_update(
    *, credential: Credential, actor, owner=None, fields: dict, secrets: dict,
    expected_version: int | None = None, allowed_hosts: list[str] | str | None = None,
) -> Credential:  # fmt: skip
    """Change the non-secret fields, owner and allowed hosts (None keeps
    them); replace only the secrets given."""
    current = Credential.objects.select_for_update().get(pk=credential.pk)
    if expected_version is not None and current.version != expected_version:
        raise CredentialError(
            "Someone changed this credential while you were editing it; review and save again."
        )
    cleaned = clean_fields(current.type, fields)
    replaced = sorted(name for name, value in secrets.items() if value)
    try:
        kept = decrypt(current.ciphertext)
    except InvalidToken:
        kept = {}  # its key is gone: every required secret must be given again
    merged = _merge_secrets(current.type, kept, secrets)
    changed = sorted(k for k in cleaned if cleaned[k] != current.fields.get(k))
    if _user_ref(owner) != _owner_ref(current):
        changed.append("owner")
    new_hosts = current.allowed_hosts if allowed_hosts is None else clean_hosts(allowed_hosts)
    if new_hosts != current.allowed_hosts:
        changed.append("allowed_hosts")
    if not changed and not replaced:
        return current
    payload = {
        "owner": _user_ref(owner),
        "fields": cleaned,
        "allowed_hosts": new_hosts,
        "secret_names": sorted(merged),
        # Names only: the history says a secret changed, never from what to what.
        "changed": changed + [f"{name} (secret)" for name in replaced],
        "ciphertext": encrypt(merged) if replaced else current.ciphertext,
    }
    return _write(current.pk, "credential.updated", payload, actor)


def _owner_ref(credential: Credential) -> dict | None:
    return _user_ref(credential.owner) if credential.owner_id else None


@transaction.atomic
def credential_allow_hosts(
    *, credential: Credential, actor, allowed_hosts: list[str]
) -> Credential:
    """Set the hosts a credential may be sent to (the data migration gives
    each existing credential the hosts its flows use)."""
    current = Credential.objects.select_for_update().get(pk=credential.pk)
    payload = {"allowed_hosts": clean_hosts(allowed_hosts)}
    return _write(current.pk, "credential.hosts_allowed", payload, actor)


@transaction.atomic
def credential_delete(*, credential: Credential, actor) -> None:
    current = Credential.objects.select_for_update().get(pk=credential.pk)
    _write(current.pk, "credential.deleted", {"name": current.name}, actor)


@transaction.atomic
def credential_rotate(*, credential: Credential, actor="system:rotate_credentials") -> Credential:
    """Re-encrypt with the newest key; the secrets themselves do not change."""
    current = Credential.objects.select_for_update().get(pk=credential.pk)
    try:
        token = _fernet().rotate(current.ciphertext.encode()).decode()
    except InvalidToken:
        raise CredentialError(
            f"Credential {current.name!r} cannot be decrypted with any configured key."
        ) from None
    return _write(current.pk, "credential.rotated", {"ciphertext": token}, actor)


# --- projection -------------------------------------------------------------------


def evolve(row: Credential | None, event: Event) -> Credential | None:
    payload = event.payload
    if event.type == "credential.created":
        row = Credential(
            id=payload["credential_id"],
            name=payload["name"],
            type=payload["type"],
            created_at=event.occurred_at,
        )
    elif row is None:
        return None  # deleted earlier in the stream
    elif event.type == "credential.deleted":
        return None
    elif event.type == "credential.rotated":
        row.ciphertext = payload["ciphertext"]
    elif event.type == "credential.hosts_allowed":
        row.allowed_hosts = payload["allowed_hosts"]
    if event.type in ("credential.created", "credential.updated"):
        owner = payload.get("owner")
        row.owner_id = owner["id"] if owner else None
        row.fields = payload["fields"]
        # Events from before allowed hosts existed carry none: kept as they are.
        row.allowed_hosts = payload.get("allowed_hosts", row.allowed_hosts or [])
        row.secret_names = payload["secret_names"]
        row.ciphertext = payload["ciphertext"]
    row.updated_at = event.occurred_at
    row.version = event.seq
    return row


def project(event: Event) -> Credential | None:
    """Apply one new event to its row, inside the appending transaction."""
    credential_id = event.payload["credential_id"]
    current = None
    if event.type != "credential.created":
        current = Credential.objects.get(pk=credential_id)
    row = evolve(current, event)
    if row is None:
        Credential.objects.filter(pk=credential_id).delete()
    else:
        row.save(force_insert=event.type == "credential.created")
    return row


def rebuild() -> int:
    """Derive every Credential row again from the events; returns rows written."""
    users = set(get_user_model().objects.values_list("id", flat=True))
    seen: list[int] = []
    names = Stream.objects.filter(name__startswith="credential:").values_list("name", flat=True)
    Credential.objects.all().delete()  # nothing references a credential row
    for name in names:
        row = None
        for event in Event.objects.filter(stream=name).order_by("seq").iterator():
            row = evolve(row, event)
        if row is None:
            continue
        if row.owner_id not in users:
            row.owner_id = None  # users are configuration, not events
        row.save(force_insert=True)
        seen.append(row.pk)
    forget_cached_secrets()
    return len(seen)


# --- reading secrets ----------------------------------------------------------------


def credential_for(name: str, *, types: set[str]) -> UsableCredential:
    """The named credential for a connector, or a non-retryable error that
    names what is wrong (and never a secret)."""
    row = Credential.objects.filter(name=name).first()
    if row is None:
        raise not_sent(f"credential {name!r} does not exist")
    if row.type not in types:
        wanted = " or ".join(sorted(types))
        raise not_sent(f"credential {name!r} is of type {row.type}; this step needs {wanted}")
    try:
        secrets = decrypt(row.ciphertext)
    except InvalidToken:
        raise not_sent(
            f"credential {name!r} cannot be decrypted with the configured keys"
        ) from None
    _remember(row, secrets)
    return UsableCredential(name=row.name, type=row.type, fields=dict(row.fields), secrets=secrets,
                            allowed_hosts=tuple(row.allowed_hosts))  # fmt: skip


def credential_secrets(name: str) -> dict:
    """The decrypted secret fields of the named credential."""
    row = Credential.objects.filter(name=name).first()
    if row is None:
        raise not_sent(f"credential {name!r} does not exist")
    return credential_for(name, types={row.type}).secrets


# --- the redaction provider -----------------------------------------------------------

# Every decrypted secret value, per process. Reloaded after a change made here,
# when a connector reads a credential newer than the cached one, and at least
# every CACHE_SECONDS for changes made by other processes (a worker reads a
# credential before it can echo it, so that path is covered at once).
CACHE_SECONDS = 30.0
_cache_lock = threading.Lock()
_cache: dict[int, tuple[int, list[str]]] = {}
_cache_loaded_at: float | None = None


def _values_to_hide(type_: str, fields: dict, secrets: dict) -> list[str]:
    values = [str(value) for value in secrets.values() if value]
    password = secrets.get("password")
    username = fields.get("username") or fields.get("user") or ""
    if password and username:
        # What Basic auth and SMTP AUTH PLAIN put on the wire (base64 of these),
        # which is not the base64 of the password alone.
        values += [f"{username}:{password}", f"\0{username}\0{password}"]
    return values


def _remember(row: Credential, secrets: dict) -> None:
    with _cache_lock:
        cached = _cache.get(row.pk)
        if cached is None or cached[0] != row.version:
            _cache[row.pk] = (row.version, _values_to_hide(row.type, row.fields, secrets))


def forget_cached_secrets() -> None:
    global _cache_loaded_at
    with _cache_lock:
        _cache_loaded_at = None


def _reload() -> None:
    global _cache_loaded_at
    loaded: dict[int, tuple[int, list[str]]] = {}
    # A savepoint: the provider runs inside the caller's append, and a failed
    # query (the table not migrated yet) must not abort that transaction.
    with transaction.atomic():
        rows = list(Credential.objects.all())
    for row in rows:
        try:
            secrets = decrypt(row.ciphertext)
        except InvalidToken:
            log.warning("credential %s cannot be decrypted with the configured keys", row.name)
            continue
        loaded[row.pk] = (row.version, _values_to_hide(row.type, row.fields, secrets))
    with _cache_lock:
        _cache.clear()
        _cache.update(loaded)
        _cache_loaded_at = time.monotonic()


def secret_values() -> list[str]:
    """Every decrypted secret value (the event store's redaction provider)."""
    loaded_at = _cache_loaded_at
    if loaded_at is None or time.monotonic() - loaded_at > CACHE_SECONDS:
        try:
            _reload()
        except DatabaseError as exc:
            log.warning("could not load credentials for redaction: %s", exc)
    with _cache_lock:
        return [value for _, values in _cache.values() for value in values]


# --- where a credential is used -------------------------------------------------------


def _names_in(graph: Any) -> set[str]:
    """Credential names a graph's nodes and compensations refer to. A draft
    is whatever JSON was saved (``"compensation": "default"``, half-typed
    nodes), so each shape is checked before it is read."""
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    names: set[str] = set()
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict):
            continue
        names |= _names_in_spec(node)
        # "default" (or {"default": true}) undoes with the node's own
        # connector and config: no other credential.
        compensation = node.get("compensation")
        if isinstance(compensation, dict):
            names |= _names_in_spec(compensation)
    return names


def _names_in_spec(spec: dict) -> set[str]:
    kind, config = spec.get("type"), spec.get("config")
    if not isinstance(kind, str) or not isinstance(config, dict):
        return set()
    try:
        fields = get(kind).credential_fields
    except UnknownConnector:
        return set()
    return {config[f] for f in fields if isinstance(config.get(f), str)}


def flows_using(name: str) -> list:
    """Flows whose newest published version or draft names the credential."""
    using = []
    for flow in Flow.objects.exclude(status="retired").order_by("name"):
        version = (
            FlowVersion.objects.filter(flow=flow, number=flow.published_version).first()
            if flow.published_version
            else None
        )
        if name in _names_in(flow.draft_graph) | _names_in(version.graph if version else None):
            using.append(flow)
    return using
