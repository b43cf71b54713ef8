"""Expression errors written for the person who wrote the expression.

When a render fails on a missing value, Jinja says ``'dict object' has no
attribute 'body'``, which names neither the place nor the way out. This
module walks the template's references (``trigger.body.email``,
``steps.shape.output.amount``) against the data the render had and names the
first one that breaks, with what was there instead:
``steps.shape has no field body (it has: amount, note)``.

References inside a ``default`` filter may be missing by design and are not
blamed. Only plain lookups are followed (a computed index stops the walk), so
this costs a few dictionary reads, outside the render's CPU budget.
"""

from typing import Any

from jinja2 import Environment, TemplateError, nodes

_parser = Environment()
# A step's data sits under ``steps.<node>.output``; people think of it as
# the step's fields, so messages say ``steps.shape``, not ``steps.shape.output``.
MAX_LISTED = 12

Segment = tuple[str, Any]  # ("attr", name) or ("item", constant)


def explain(source: str, data: dict, culprit: str | None = None) -> str | None:
    """The reference in ``source`` that ``data`` cannot satisfy, in words;
    None when every plain reference resolves. ``culprit`` is the name the
    render failed on, when known: a reference that breaks there is preferred
    to an earlier one that broke too but was never evaluated (the other side
    of an ``if``)."""
    try:
        tree = _parser.parse(source)
    except (TemplateError, RecursionError):
        return None
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    first = None
    for root, segments in _references(tree, defaulted=False):
        if root in assigned:
            continue
        message = _resolve(root, segments, data)
        if not message:
            continue
        if culprit is None or _breaks_at(root, segments, data) == culprit:
            return message
        first = first or message
    return first


def _breaks_at(root: str, segments: list[Segment], data: dict) -> str:
    """The name at which a broken reference breaks."""
    for length in range(len(segments) + 1):
        if _resolve(root, segments[:length], data):
            return str(segments[length - 1][1]) if length else root
    return ""


def missing_step(name: str, earlier: list[str]) -> str:
    """Shared with publish-time validation, so both say the same."""
    return f"steps.{name} is not a step before this node (earlier steps: {_listed(earlier)})"


def _references(node: nodes.Node | None, *, defaulted: bool):
    """(root name, lookups) of each plain reference chain, in source order."""
    if node is None:
        return
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        yield from _references(node.node, defaulted=True)
        for child in node.args:
            yield from _references(child, defaulted=defaulted)
        return
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        # ``x.items()``: a method of the value, not a field; check ``x``.
        yield from _references(node.node.node, defaulted=defaulted)
        for argument in [*node.args, *node.kwargs]:
            yield from _references(argument, defaulted=defaulted)
        return
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        current, segments = _chain(node)
        if isinstance(current, nodes.Name) and current.ctx == "load":
            if not defaulted:
                yield current.name, segments
            return
        if current is not node:
            yield from _references(current, defaulted=defaulted)
            return
    for inner in node.iter_child_nodes():
        yield from _references(inner, defaulted=defaulted)


def _chain(node: nodes.Node) -> tuple[nodes.Node, list[Segment]]:
    """Walk ``a.b["c"].d`` down to its root: (the root node, the lookups
    from it in source order)."""
    segments: list[Segment] = []
    current = node
    while True:
        if isinstance(current, nodes.Getattr):
            segments.insert(0, ("attr", current.attr))
        elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
            segments.insert(0, ("item", current.arg.value))
        else:
            return current, segments
        current = current.node


def _resolve(root: str, segments: list[Segment], data: dict) -> str | None:
    if root not in data:
        return f"{root} is not defined here (you can use: {_listed(list(data))})"
    value, shown = data[root], root
    for index, (kind, key) in enumerate(segments):
        if root == "steps" and index == 0:
            if not isinstance(value, dict) or key not in value:
                return missing_step(str(key), list(value) if isinstance(value, dict) else [])
            value, shown = value[key], f"steps.{key}"
            continue
        if root == "steps" and index == 1:
            if key != "output":
                fields = _fields(value.get("output")) if isinstance(value, dict) else "none"
                return (
                    f"{shown} has no field {key}; a step's data is {shown}.output.…"
                    f" ({shown}.output has: {fields})"
                )
            value = value.get("output") if isinstance(value, dict) else None
            continue
        step = _step(value, kind, key, shown)
        if isinstance(step, str):
            return step
        if step is None:
            return None  # a method or attribute of the value: not ours to judge
        value, shown = step[0], _join(shown, kind, key)
    return None


def _step(value: Any, kind: str, key: Any, shown: str):
    """(next value,) or an error message, or None when Jinja would find an
    attribute of the Python value itself (``name.upper``)."""
    if isinstance(value, dict):
        if key in value:
            return (value[key],)
        if kind == "attr" and hasattr(value, str(key)):
            return None
        if not value:
            return f"{shown} has no field {key} (it is empty)"
        return f"{shown} has no field {key} (it has: {_fields(value)})"
    if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
        if -len(value) <= key < len(value):
            return (value[key],)
        return f"{shown} has no item {key} (it has {len(value)} item{'s' * (len(value) != 1)})"
    if kind == "attr" and hasattr(value, str(key)):
        return None
    return f"{shown} is {_kind(value)}, which has no field {key}"


def _join(shown: str, kind: str, key: Any) -> str:
    return f"{shown}.{key}" if kind == "attr" else f"{shown}[{key!r}]"


def _fields(value: Any) -> str:
    if isinstance(value, dict):
        return _listed([str(k) for k in value])
    return f"nothing, it is {_kind(value)}"


def _listed(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return type(value).__name__
