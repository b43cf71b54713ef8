"""The one projector registry: how the apps' rows follow the event log.

Each app registers, from its ``AppConfig.ready()``:

- live projectors, ``register_projector(keys, fn)``: ``fn(events)`` is called
  with the newly stored events it subscribes to, inside the transaction that
  appended them, so its rows change in the same commit as the log. A key
  ending in ``:`` is a stream prefix (``"flow:"``), one ending in ``.`` an
  event-type prefix (``"approval."``), anything else one event type
  (``"run.failed"``). Writers call ``project(events)`` once their own rows
  are written; projectors run in registration order (``INSTALLED_APPS``);
- rebuilds, ``register_rebuild(name, fn, after=...)``: ``fn()`` derives the
  app's rows again from the log alone and returns how many it wrote.
  ``manage.py rebuild_projections`` runs them in an order that puts each
  after the rebuilds it names.

Cross-app reactions (a published version binds its trigger, a run's end
closes its approval tasks) go through here, so the app that records a fact
never imports the apps that react to it.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from runs.ground.models import Event

LiveProjector = Callable[[Sequence[Event]], None]
Rebuild = Callable[[], int]


class ProjectorError(ValueError):
    """A registration the registry cannot honour."""


def _matches(key: str, event: Event) -> bool:
    if key.endswith(":"):
        return event.stream.startswith(key)
    if key.endswith("."):
        return event.type.startswith(key)
    return event.type == key


@dataclass(frozen=True)
class _Subscription:
    keys: tuple[str, ...]
    project: LiveProjector

    def wants(self, event: Event) -> bool:
        return any(_matches(key, event) for key in self.keys)


@dataclass(frozen=True)
class _Rebuild:
    rebuild: Rebuild
    after: tuple[str, ...]


_subscriptions: list[_Subscription] = []
_rebuilds: dict[str, _Rebuild] = {}


def register_projector(keys: str | Iterable[str], project: LiveProjector) -> None:
    """Call ``project`` with the new events that ``keys`` name, in the order
    they were stored (one call per commit, however many keys match)."""
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if not keys or not all(keys):
        raise ProjectorError("a projector needs a stream prefix or an event type")
    subscription = _Subscription(keys, project)
    # AppConfig.ready() may run twice (tests that reload apps): once is enough.
    if subscription not in _subscriptions:
        _subscriptions.append(subscription)


def register_rebuild(name: str, rebuild: Rebuild, *, after: Iterable[str] = ()) -> None:
    """``rebuild`` derives the rows called ``name`` from the log alone."""
    known = _rebuilds.get(name)
    entry = _Rebuild(rebuild, tuple(after))
    if known is not None and known != entry:
        raise ProjectorError(f"two rebuilds are registered as {name!r}")
    _rebuilds[name] = entry


def project(events: Sequence[Event]) -> None:
    """Hand newly stored events to the projectors that subscribe to them."""
    for subscription in list(_subscriptions):
        wanted = [event for event in events if subscription.wants(event)]
        if wanted:
            subscription.project(wanted)


def rebuilds() -> list[tuple[str, Rebuild]]:
    """Every registered rebuild, each after the rebuilds it names."""
    order = TopologicalSorter({name: entry.after for name, entry in _rebuilds.items()})
    try:
        names = list(order.static_order())
    except CycleError as exc:
        raise ProjectorError(f"rebuilds wait on each other: {exc.args[1]}") from None
    missing = [name for name in names if name not in _rebuilds]
    if missing:
        raise ProjectorError(f"rebuilds wait on unregistered ones: {', '.join(missing)}")
    return [(name, _rebuilds[name].rebuild) for name in names]
