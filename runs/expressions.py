"""Expressions in node configs: ``{{ trigger.body.email }}``,
``{{ steps.charge.output.id }}``.

They render in Jinja2's immutable sandbox (no attribute tricks, no mutation),
with a cap on output size and on arithmetic that explodes (``9**9**9``,
``'x' * 10**9``), and a CPU budget per render (``runs/expression_limits.py``),
so a flow cannot take a worker down nor hold a transaction open. A string
that is one whole expression yields the native value (a number stays a
number); any other template yields text. Compiled templates are cached; the
budget is per render, so a cached template is bounded as much as a new one.
"""

import functools
import re
from typing import Any

from django.conf import settings
from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from runs import expression_help
from runs import expression_limits as limits
from runs.expression_limits import ExpressionError, ExpressionTimeout

__all__ = ["ExpressionError", "ExpressionTimeout", "render"]

MAX_OUTPUT_CHARS = limits.MAX_OUTPUT_CHARS
MAX_EXPONENT = 64
MAX_NUMBER_BITS = 4096
# The filter every ``{% for %}`` loop's iterable passes through (added by
# the compiler, see ``_Environment._generate``), so each iteration is a tick.
COUNTED = "__counted__"
# Filters that build a string from a width or a replacement: checked first.
_GUARDED_FILTERS = {
    "center": lambda value, width=80, *a, **k: limits.check_width(width),
    "indent": lambda value, width=4, *a, **k: limits.check_width(width),
    "format": lambda value, *args, **kwargs: limits.check_percent_format(value, args),
    "replace": lambda ctx, value, old, new, count=None: limits.check_replace(
        value, old, new, -1 if count is None else count
    ),
}

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class _StrictChainableUndefined(ChainableUndefined, StrictUndefined):
    """``steps.x.output.y | default(0)`` works; using a missing value fails."""


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["**", "*", "+", "<<", "%"])
    intercepted_unops = frozenset(["-", "+"])

    def call_binop(self, context, operator, left, right):
        limits.tick()
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "<<" and isinstance(right, int) and right > MAX_NUMBER_BITS:
            raise SecurityError("shift is too large")
        if operator == "%":
            limits.check_percent_format(left, right)
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

    def call_unop(self, context, operator, arg):
        limits.tick()
        return super().call_unop(context, operator, arg)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's signature)
        limits.tick()
        limits.check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj, attribute):
        limits.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        limits.tick()
        return super().getitem(obj, argument)

    def concat(self, parts):
        return limits.concat(parts)

    def _generate(self, source, name, filename, defer_init=False):
        # Every loop iterates through COUNTED, which ticks per item: nested
        # loops over one list make no call the other hooks would count.
        for loop in list(source.find_all(nodes.For)):
            loop.iter = nodes.Filter(loop.iter, COUNTED, [], [], None, None, lineno=loop.lineno)
        return super()._generate(source, name, filename, defer_init=defer_init)


def _guarded(name: str, check):
    original = _env.filters[name]

    @functools.wraps(original)
    def guarded(*args, **kwargs):
        limits.tick()
        check(*args, **kwargs)
        return original(*args, **kwargs)

    return guarded


_env = _Environment(undefined=_StrictChainableUndefined, autoescape=False)
_env.filters[COUNTED] = limits.counted
for _name, _check in _GUARDED_FILTERS.items():
    _env.filters[_name] = _guarded(_name, _check)


@functools.lru_cache(maxsize=1024)
def _template(source: str):
    return _env.from_string(source)


@functools.lru_cache(maxsize=1024)
def _expression(source: str):
    return _env.compile_expression(source, undefined_to_none=False)


def budget_ms() -> int:
    return int(getattr(settings, "LEDGERFLOW_EXPRESSION_BUDGET_MS", limits.DEFAULT_BUDGET_MS))


def has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(has_expression(v) for v in value)
    return False


def render(value: Any, data: dict) -> Any:
    """Render every expression inside ``value`` (a JSON-shaped config),
    all of them within one CPU budget. Over it, ``ExpressionTimeout`` names
    the field (``fields.total``, ``items[2]``) it ran out in."""
    with limits.budget(budget_ms()):
        return _render(value, data, "")


def _render(value: Any, data: dict, field: str) -> Any:
    if isinstance(value, dict):
        return {
            key: _render(item, data, f"{field}.{key}" if field else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_render(item, data, f"{field}[{index}]") for index, item in enumerate(value)]
    if not isinstance(value, str) or not has_expression(value):
        return value
    try:
        return _render_text(value, data)
    except ExpressionTimeout as exc:
        raise exc.at(field) from None


def _render_text(value: str, data: dict) -> Any:
    whole = _WHOLE_EXPRESSION.match(value)
    try:
        if whole and "{{" not in whole.group("expr") and "}}" not in whole.group("expr"):
            result = _expression(whole.group("expr"))(**data)
            if isinstance(result, ChainableUndefined):
                raise ExpressionError(
                    _undefined(value, data, f"{whole.group('expr').strip()} is undefined")
                )
            _check_size(result)
            return result
        text = _template(value).render(**data)
    except ExpressionError:
        raise
    except UndefinedError as exc:
        raise ExpressionError(_undefined(value, data, _describe(exc))) from None
    except RecursionError:
        raise ExpressionError("recursion is too deep") from None
    except (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
        raise ExpressionError(_describe(exc)) from None
    if len(text) > MAX_OUTPUT_CHARS:
        raise ExpressionError(f"rendered text is longer than {MAX_OUTPUT_CHARS} characters")
    return text


_JINJA_CULPRIT = re.compile(r"has no attribute '([^']*)'|^'([^']*)' is undefined|no element (\S+)")


def _undefined(source: str, data: dict, fallback: str) -> str:
    """Which reference is missing and what is there instead, rather than
    Jinja's "'dict object' has no attribute"."""
    named = _JINJA_CULPRIT.search(fallback)
    culprit = next((g for g in named.groups() if g is not None), None) if named else None
    return expression_help.explain(source, data, culprit) or fallback


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
        except RecursionError:  # the parser recurses once per nesting level
            return "the expression is nested too deeply"
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
            _walk(_env.parse(template), defaulted=False, found=found)
        except (TemplateError, RecursionError):
            continue  # check_syntax reports it
    return found


def _walk(node: nodes.Node, *, defaulted: bool, found: list) -> None:
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        # A filter block ({% filter %}) has no node: nothing is defaulted.
        if node.node is not None:
            _walk(node.node, defaulted=True, found=found)
        for argument in node.args:
            _walk(argument, defaulted=defaulted, found=found)
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
