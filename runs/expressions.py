"""Expressions in node configs: ``{{ trigger.body.email }}``,
``{{ steps.charge.output.id }}``.

They render in Jinja2's immutable sandbox (no attribute tricks, no mutation),
with a cap on output size and on arithmetic that explodes (``9**9**9``,
``'x' * 10**9``), so a flow cannot take a worker down. A string that is one
whole expression yields the native value (a number stays a number); any other
template yields text.
"""

import re
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_OUTPUT_CHARS = 64_000
MAX_EXPONENT = 64
MAX_NUMBER_BITS = 4096

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class ExpressionError(ValueError):
    pass


class _StrictChainableUndefined(ChainableUndefined, StrictUndefined):
    """``steps.x.output.y | default(0)`` works; using a missing value fails."""


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["**", "*", "+", "<<"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "<<" and isinstance(right, int) and right > MAX_NUMBER_BITS:
            raise SecurityError("shift is too large")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int):
                    if len(seq) * count > MAX_OUTPUT_CHARS:
                        raise SecurityError("repetition would exceed the output cap")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, int) and result.bit_length() > MAX_NUMBER_BITS:
            raise SecurityError("number is too large")
        if isinstance(result, str | list | tuple) and len(result) > MAX_OUTPUT_CHARS:
            raise SecurityError("value would exceed the output cap")
        return result


_env = _Environment(undefined=_StrictChainableUndefined, autoescape=False)


def has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(has_expression(v) for v in value)
    return False


def render(value: Any, data: dict) -> Any:
    """Render every expression inside ``value`` (a JSON-shaped config)."""
    if isinstance(value, dict):
        return {key: render(item, data) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, data) for item in value]
    if not isinstance(value, str) or not has_expression(value):
        return value
    whole = _WHOLE_EXPRESSION.match(value)
    try:
        if whole and "{{" not in whole.group("expr") and "}}" not in whole.group("expr"):
            compiled = _env.compile_expression(whole.group("expr"), undefined_to_none=False)
            result = compiled(**data)
            if isinstance(result, ChainableUndefined):
                raise ExpressionError(f"{whole.group('expr').strip()} is undefined")
            _check_size(result)
            return result
        text = _env.from_string(value).render(**data)
    except ExpressionError:
        raise
    except (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
        raise ExpressionError(_describe(exc)) from None
    if len(text) > MAX_OUTPUT_CHARS:
        raise ExpressionError(f"rendered text is longer than {MAX_OUTPUT_CHARS} characters")
    return text


def _check_size(result: Any) -> None:
    if isinstance(result, str | list | dict) and len(str(result)) > MAX_OUTPUT_CHARS:
        raise ExpressionError(f"value is larger than {MAX_OUTPUT_CHARS} characters")


def _describe(exc: Exception) -> str:
    message = str(exc) or type(exc).__name__
    if "is undefined" in message or "has no attribute" in message:
        return message.replace("'_StrictChainableUndefined'", "undefined value")
    return message


def check_syntax(value: Any) -> str | None:
    """The first syntax error among the templates in ``value``, or None."""
    for template in _templates(value):
        try:
            _env.parse(template)
        except TemplateError as exc:
            return str(exc)
    return None


def _templates(value: Any):
    if isinstance(value, dict):
        for item in value.values():
            yield from _templates(item)
    elif isinstance(value, list):
        for item in value:
            yield from _templates(item)
    elif isinstance(value, str) and has_expression(value):
        yield value


def step_references(value: Any) -> list[tuple[str, bool]]:
    """``(node_id, has_default)`` for every ``steps.<node>`` a config reads.

    A reference inside a ``default`` filter may be absent at run time (the
    node was skipped on this path); any other must be there on every path.
    """
    found: list[tuple[str, bool]] = []
    for template in _templates(value):
        try:
            tree = _env.parse(template)
        except TemplateError:
            continue
        _walk(tree, defaulted=False, found=found)
    return found


def _walk(node: nodes.Node, *, defaulted: bool, found: list) -> None:
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        _walk(node.node, defaulted=True, found=found)
        for child in node.args:
            _walk(child, defaulted=defaulted, found=found)
        return
    target = None
    if isinstance(node, nodes.Getattr) and _is_steps(node.node):
        target = node.attr
    elif (
        isinstance(node, nodes.Getitem)
        and _is_steps(node.node)
        and isinstance(node.arg, nodes.Const)
    ):
        target = str(node.arg.value)
    if target is not None:
        found.append((target, defaulted))
        return
    for child in node.iter_child_nodes():
        _walk(child, defaulted=defaulted, found=found)


def _is_steps(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "steps"
