"""Limits on what one expression may cost, beyond its syntax.

**Time.** Every render gets a CPU budget (``LEDGERFLOW_EXPRESSION_BUDGET_MS``,
the thread's CPU time, not the wall clock: a busy machine must not fail an
honest template). Rendering calls ``tick`` at every step that can repeat: each
iteration of a ``{% for %}`` loop, each call (macros included, so recursion is
counted), attribute and item access, operators and output chunks. A tick
reads the clock now and then; past the deadline it raises
``ExpressionTimeout``, and every later tick of that render raises again, so
code that swallows the first one cannot carry on. The budget lives in a
context variable, not in the template: a compiled template that is cached
and rendered again gets a fresh budget each time, and rendering off the main
thread needs no signal (SIGALRM only reaches the main thread).

**Size in one call.** A deadline cannot interrupt one C call, so calls that
build a string from a small input are checked before they run: padding and
centring (``center``, ``indent``, ``ljust``...), format widths and precisions
(``%``, ``format``, ``str.format``) and ``replace``.
"""

import contextlib
import contextvars
import re
import string
import time
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2.sandbox import SecurityError

MAX_OUTPUT_CHARS = 64_000
DEFAULT_BUDGET_MS = 100
# Ticks between two reads of the clock: a read costs about as much as a
# loop iteration, so it is read once every few hundred.
CLOCK_EVERY = 256


class ExpressionError(ValueError):
    pass


class ExpressionTimeout(ExpressionError):
    """Rendering used up its CPU budget. Not retryable: the same template on
    the same data would only spend it again."""

    def __init__(self, budget_ms: int, field: str = ""):
        self.budget_ms, self.field = budget_ms, field
        where = f"field '{field}': " if field else ""
        super().__init__(f"{where}expression exceeded its time budget ({budget_ms} ms)")

    def at(self, field: str) -> "ExpressionTimeout":
        return self if self.field else ExpressionTimeout(self.budget_ms, field)


class _Budget:
    __slots__ = ("budget_ms", "deadline", "ticks", "spent")

    def __init__(self, budget_ms: int):
        self.budget_ms = budget_ms
        self.deadline = time.thread_time() + budget_ms / 1000
        self.ticks = 0
        self.spent = False

    def tick(self) -> None:
        self.ticks += 1
        if self.spent or (self.ticks % CLOCK_EVERY == 0 and time.thread_time() > self.deadline):
            self.spent = True
            raise ExpressionTimeout(self.budget_ms)


_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "expression_budget", default=None
)


@contextlib.contextmanager
def budget(budget_ms: int) -> Iterator[None]:
    """Give the renders in this block ``budget_ms`` of CPU time in all;
    a block inside another one shares the outer budget."""
    if _current.get() is not None:
        yield
        return
    state = _Budget(budget_ms)
    token = _current.set(state)
    try:
        yield
    finally:
        _current.reset(token)
    if state.spent:  # a tick's error was swallowed by code that caught it
        raise ExpressionTimeout(budget_ms)


def tick() -> None:
    current = _current.get()
    if current is not None:
        current.tick()


def counted(iterable: Iterable) -> Iterator:
    """What a ``{% for %}`` loop iterates over: each item is a tick."""
    current = _current.get()
    for item in iterable:
        if current is not None:
            current.tick()
        yield item


def concat(parts: Iterable[str]) -> str:
    """A template's output, refused as soon as it passes the cap (before
    the whole of it is built)."""
    out, size = [], 0
    for part in parts:
        tick()
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"rendered text is longer than {MAX_OUTPUT_CHARS} characters")
        out.append(part)
    return "".join(out)


# --- one call that builds a large string ---------------------------------------

_PADDING_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_SPEC_NUMBERS = re.compile(r"\d+")


def check_call(func: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a call of a string method that would build a string over the
    cap (sandboxed ``str.format`` is a wrapper of the bound method)."""
    method = getattr(func, "__wrapped__", func)
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(method, "__name__", "")
    if name in _PADDING_METHODS:
        check_width(*args, *kwargs.values())
    elif name in ("format", "format_map"):
        check_braces_format(owner, args, kwargs)
    elif name == "replace" and len(args) >= 2:
        check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)


def check_width(*values: Any) -> None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_OUTPUT_CHARS:
            raise SecurityError(f"a width of {value} would exceed the output cap")


def check_percent_format(template: Any, args: Any) -> None:
    """``"%9999999d" % x`` and the ``format`` filter."""
    if not isinstance(template, str):
        return
    star = False
    for width, precision in _PERCENT_SPEC.findall(template):
        for number in (width, precision):
            if number == "*":
                star = True
            elif number:
                check_width(int(number))
    if star:
        values = args if isinstance(args, tuple | list) else (args,)
        check_width(*values)


def check_braces_format(template: str, args: tuple, kwargs: dict) -> None:
    """``"{:>9999999}".format(x)``; a width given as an argument
    (``{:{}}``) is checked among the arguments."""
    nested = False
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format will refuse it with its own message
    for _, _, spec, _ in fields:
        if spec:
            nested = nested or "{" in spec
            for number in _SPEC_NUMBERS.findall(spec):
                check_width(int(number))
    if nested:
        check_width(*args, *kwargs.values())


def check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    matches = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        matches = min(matches, count)
    if len(text) + matches * (len(new) - len(old)) > MAX_OUTPUT_CHARS:
        raise SecurityError("replace would exceed the output cap")
