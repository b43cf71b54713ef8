"""Secrets belong in credentials, never in a graph.

Drafts and published graphs are recorded verbatim in the hash-chained log
(``flow.draft_saved``, ``flow.published``), which cannot be rewritten: a key
typed into a config would stay there for good. So a value under a
secret-named key (``api_key``, ``X-Api-Key``, ``token``, ``password``,
``Authorization``...) at any depth of a node's config or compensation must be
empty or wholly an expression; the secret itself lives in a credential,
which the step names.
"""

import re
from collections.abc import Iterator
from typing import Any

# A quoted string this long inside an expression is taken for a secret
# ("{{ 'Bearer ' ~ trigger.token }}" passes; "{{ 'sk_live_...' }}" does not).
LITERAL_IN_EXPRESSION = 8
SECRET_NAME = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)
_EXPRESSION = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_QUOTED = re.compile(r"'([^'\\]*)'|\"([^\"\\]*)\"")
# What the run pages show in place of a value that is not shown.
MASKS = {"********", "[redacted]"}
ADVICE = (
    "a secret may not be written into a flow (its graph is kept in the audit log for good): "
    "store it as a credential and name the credential in the step"
)


def is_secret_name(name: Any) -> bool:
    return isinstance(name, str) and bool(SECRET_NAME.search(name))


def is_literal_secret(value: Any) -> bool:
    """Whether ``value``, found under a secret-named key, holds a secret
    itself rather than computing one from the run's data."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not text or text in MASKS:
        return False
    if _EXPRESSION.sub("", text).strip():
        return True  # text around (or instead of) the expressions
    return any(_holds_literal(expression) for expression in _EXPRESSION.findall(text))


def _holds_literal(expression: str) -> bool:
    """A quoted string long enough to be a secret, unless it is a subscript
    (``output['access_token']`` names a field, it is not a value)."""
    for match in _QUOTED.finditer(expression):
        literal = match.group(1) if match.group(1) is not None else match.group(2)
        before = expression[: match.start()].rstrip()[-1:]
        after = expression[match.end() :].lstrip()[:1]
        if len(literal) >= LITERAL_IN_EXPRESSION and (before, after) != ("[", "]"):
            return True
    return False


def secret_paths(value: Any, path: str = "", under: bool = False) -> Iterator[str]:
    """Dotted paths in ``value`` where a secret-named key holds a literal."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield from secret_paths(item, where, under or is_secret_name(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from secret_paths(item, f"{path}[{index}]", under)
    elif under and is_literal_secret(value):
        yield path


def graph_secret_paths(graph: Any) -> list[tuple[str, str]]:
    """(node id, field path) of every literal secret in a graph's node
    configs and compensation configs. Tolerates an incomplete draft."""
    found = []
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict):
            continue
        for part in ("config", "compensation"):
            spec = node.get(part)
            if isinstance(spec, dict):
                found += [(str(node.get("id", "?")), p) for p in secret_paths(spec, part)]
    return found
