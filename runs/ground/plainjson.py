"""JSON the event log can store: the one check every input path shares.

The event store refuses what PostgreSQL or the hash chain cannot hold
faithfully, and every way in (webhooks, forms, the API, imports) asks this
module first, so a bad value is a 400 or a form error with a message instead
of a 500 deep in an append:

- strings (and keys) with a lone surrogate cannot be encoded as UTF-8, and
  PostgreSQL's text and jsonb refuse the NUL character;
- integers beyond PostgreSQL's bigint, and floats that are not finite or as
  large, are "numbers too large";
- input nested deeper than 64 levels is refused (code that walks a document
  recursively would run out of stack); the store itself allows more, since
  its events wrap inputs and outputs in a few levels of their own;
- only dicts with string keys, lists, strings, numbers, booleans and null.

``storable`` also canonicalises the two floats jsonb does not give back as
they were written, so that the chain's byte-for-byte verification holds:
``-0.0`` (jsonb has no negative zero) and floats from 1e16 up, which Python
writes with an exponent and jsonb without (they are whole numbers, so they
become the same integer).
"""

import math
from typing import Any

MAX_DEPTH = 64  # for inputs
STORE_DEPTH = 256  # for events, which wrap inputs
MAX_INTEGER = 2**63 - 1
# From here on Python writes a float with an exponent ("1e+16").
EXPONENT_FLOATS = 1e16


class NotStorable(ValueError):
    """The value cannot be stored in the event log; the message says where."""


def _where(path: list) -> str:
    return "".join(f"[{part!r}]" for part in path) or "the value"


def _check_text(text: str, path: list, what: str) -> None:
    if "\x00" in text:
        raise NotStorable(f"{what} at {_where(path)} contains a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotStorable(
            f"{what} at {_where(path)} contains a lone surrogate (not valid Unicode)"
        ) from None


def _number(value: int | float, path: list) -> int | float:
    if isinstance(value, int):
        if -MAX_INTEGER <= value <= MAX_INTEGER:
            return value
        raise NotStorable(f"the number at {_where(path)} is too large (more than 2^63 - 1)")
    if math.isnan(value):
        raise NotStorable(f"the value at {_where(path)} is not a number (NaN)")
    if abs(value) > MAX_INTEGER:  # infinity too
        raise NotStorable(f"the number at {_where(path)} is too large (more than 2^63 - 1)")
    if value == 0:
        return 0.0  # drops the sign of -0.0
    if abs(value) >= EXPONENT_FLOATS:
        return int(value)
    return value


def storable(value: Any, *, max_depth: int = STORE_DEPTH) -> Any:
    """``value`` made canonical for the event log, or NotStorable."""
    return _storable(value, [], 0, max_depth)


def _storable(value: Any, path: list, depth: int, max_depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value, path)
    if isinstance(value, str):
        _check_text(value, path, "the text")
        return value
    if depth >= max_depth:
        raise NotStorable(f"the value is nested too deeply (more than {max_depth} levels)")
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotStorable(f"the key {key!r} at {_where(path)} is not text")
            _check_text(key, path, "a key")
            result[key] = _storable(item, [*path, key], depth + 1, max_depth)
        return result
    if isinstance(value, list | tuple):
        return [
            _storable(item, [*path, index], depth + 1, max_depth)
            for index, item in enumerate(value)
        ]
    raise NotStorable(f"{type(value).__name__} at {_where(path)} is not plain JSON")


def problem(value: Any) -> str | None:
    """Why the input ``value`` cannot be stored, or None: for input paths
    that answer with a message rather than an exception."""
    try:
        storable(value, max_depth=MAX_DEPTH)
    except NotStorable as exc:
        return str(exc)
    return None
