"""Error signatures: what makes two dead letters "the same failure".

An error's text carries the details of one occurrence (an order id, an
amount, a time, a UUID, a quoted value); with those replaced by placeholders,
the failures of one cause read alike, and with the connector and the
breaker target added, one signature names one thing to fix. Pure: no ORM."""

import hashlib
import re
from dataclasses import dataclass

# Order matters: the wider shapes go first, so a UUID or a timestamp is not
# eaten digit by digit by the number rule.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"'[^']*'|\"[^\"]*\"|“[^”]*”"), "<value>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}"
            r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        ),
        "<time>",
    ),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<time>"),
    # Hex ids (hashes, request ids, idempotency keys) of 16 and more digits.
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{16,}\b"), "<id>"),
    # A word glued to digits (ord_123, A-1, ch_9f): an id of some record.
    (re.compile(r"\b[A-Za-z]+[_-]\d[\w-]*\b"), "<id>"),
    (re.compile(r"\b\d+(?:\.\d+){2,}\b"), "<n>"),  # addresses, versions
    # An HTTP status is the cause itself, not a detail: 422 and 503 differ.
    (
        re.compile(
            r"(?<!HTTP )(?<!status )(?<!status: )(?<!answered )"
            r"(?<![\d.])[-+]?\d+(?:\.\d+)?"
        ),
        "<n>",
    ),
)
_SPACES = re.compile(r"\s+")
MAX_TEXT = 300


def normalise(error: str) -> str:
    """The error's text with its per-occurrence details as placeholders."""
    text = error or ""
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return _SPACES.sub(" ", text).strip()[:MAX_TEXT]


@dataclass(frozen=True)
class Signature:
    connector: str
    target: str  # the breaker target ("" when the step reaches nothing outside)
    text: str  # the normalised error

    @property
    def key(self) -> str:
        """A short stable name for URLs and select-all: the same signature
        gives the same key on every page load and in exports."""
        raw = f"{self.connector}\x1f{self.target}\x1f{self.text}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def signature_of(*, error: str, connector: str, target: str | None) -> Signature:
    return Signature(connector=connector, target=target or "", text=normalise(error))
