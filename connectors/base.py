"""The connector contract and the registry.

A connector is one module under ``connectors/`` holding one class registered
by key. Flows store the key as a plain string validated against the registry,
so adding a connector needs no migration. The run engine knows connectors only
through this contract.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from pydantic import BaseModel, ConfigDict, ValidationError


class SideEffect(StrEnum):
    """What re-running a step may do to the outside world."""

    NONE = "none"  # reads only; safe to re-run
    IDEMPOTENT = "idempotent"  # the remote deduplicates on the idempotency key
    COMPENSATABLE = "compensatable"  # has an undo, and honours the key
    UNSAFE = "unsafe"  # re-running may repeat the effect


SAFE_TO_RERUN = {SideEffect.NONE, SideEffect.IDEMPOTENT, SideEffect.COMPENSATABLE}


class ConnectorError(Exception):
    """A failed call. ``retryable`` says whether trying again may succeed.

    ``may_have_been_sent`` says whether the remote may have acted on the
    request: true unless the connector has proof that nothing left (a DNS
    failure, a refused or timed-out connect, a pool timeout, the outbound
    guard's refusal, a config or input error found before any I/O, or a
    remote that answered that it did not process the request). On a step
    that is not safe to re-run, a failure that may have been sent is an
    outcome-unknown dead letter, never a retry (``runs/decider.py``)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        details: dict | None = None,
        may_have_been_sent: bool = True,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.details = details or {}
        self.may_have_been_sent = may_have_been_sent


def not_sent(message: str, *, retryable: bool = False, **kwargs: Any) -> ConnectorError:
    """A failure proven to have reached no remote (found before any I/O, or a
    connection that never opened)."""
    return ConnectorError(message, retryable=retryable, may_have_been_sent=False, **kwargs)


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_iterations(outputs: dict[int, Any]) -> None:
    raise ConnectorError("this step cannot record loop iterations", retryable=False)


@dataclass
class Context:
    run_id: int
    node_id: str
    attempt: int
    config: Any  # the connector's Config, expressions rendered
    idempotency_key: str
    data: dict  # {"trigger": ..., "steps": {node: {"output": ...}}}
    now: dt.datetime
    heartbeat: Callable[[], None] = field(default=lambda: None)
    # "do", or "undo" when the step is the node's compensation.
    phase: str = "do"
    # Undo: the output of the step being undone (the charge to refund).
    original_output: Any = None
    # Outputs of the incoming branches that have arrived, by source node
    # (what a merge combines).
    arrived: dict = field(default_factory=dict)
    # Loops: iterations already recorded (index -> output), the key of
    # iteration i, and a durable recorder (one commit per call).
    iterations_done: dict[int, Any] = field(default_factory=dict)
    iteration_key: Callable[[int], str] = field(default=lambda index: "")
    record_iterations: Callable[[dict[int, Any]], None] = field(default=_no_iterations)


@dataclass
class Result:
    output: Any = None
    port: str = "out"
    wait_until: dt.datetime | None = None  # the step waits for a durable timer
    # The step waits, with no timer, for a signal of this kind ("approval",
    # "subflow"); the driver's ``signal_step`` ends the wait.
    wait_for: str | None = None
    # Facts recorded on the run's stream in the same commit as the step's
    # outcome (an approval's request, say), so they share its fate; the run
    # state ignores them and their own projection reads them.
    events: list[tuple[str, dict]] = field(default_factory=list)


class Connector:
    """One node type. Subclass, fill the class attributes, implement
    ``execute``; decorate with ``@register``. See README, "How to add a
    connector"."""

    key: ClassVar[str]
    label: ClassVar[str]
    category: ClassVar[str]
    icon: ClassVar[str] = "box"
    description: ClassVar[str] = ""
    Config: ClassVar[type[BaseModel]] = StrictConfig
    # A valid config, shown in the catalogue and used by the contract test.
    example_config: ClassVar[dict] = {}
    # What running it may do to the outside world, when that does not depend
    # on the config (``side_effect`` may refine it per config).
    side_effect_class: ClassVar[SideEffect] = SideEffect.NONE
    # Output ports; edges leave from one of these (see ``ports_for``).
    ports: ClassVar[tuple[str, ...]] = ("out",)
    # Config fields the driver leaves unrendered: the connector renders them
    # itself with more data (a loop's body sees ``item`` and ``index``).
    deferred_fields: ClassVar[tuple[str, ...]] = ()
    # A trigger starts a run; a flow has exactly one.
    is_trigger: ClassVar[bool] = False
    # Pure computation: evaluated inside the deciding transaction, no message.
    inline: ClassVar[bool] = False
    # Longest a call may take; the step's lease is longer than this.
    timeout_seconds: ClassVar[float] = 30.0
    output_schema: ClassVar[dict | None] = None
    # Config fields that hold a credential's name (never a secret): the
    # store decrypts it at run time; export and import keep the name. No
    # config holds a secret itself: graphs are recorded verbatim in the log.
    credential_fields: ClassVar[tuple[str, ...]] = ()
    # Shown in the editor's palette. Demo and benchmark connectors say False:
    # flows that use them still render, but nobody picks them for new work.
    in_palette: ClassVar[bool] = True

    def side_effect(self, config: BaseModel) -> SideEffect:
        return self.side_effect_class

    def ports_for(self, config: Any) -> tuple[str, ...]:
        """The ports of a node with this (raw, unrendered) config. Fixed by
        default; a connector whose ports come from its config (a switch)
        overrides this. It must not fail on a bad config: validation reports
        that separately."""
        return self.ports

    def execute(self, ctx: Context) -> Result:
        raise NotImplementedError

    # The connector's own undo, used by a node whose compensation is
    # "default". ``ctx.original_output`` is the output being undone and
    # ``ctx.idempotency_key`` the undo's own key. Connectors without an undo
    # leave this as it is.
    compensate: ClassVar[Callable[["Connector", Context], Result] | None] = None

    # Optional: check a config against the remote (credentials, reachability)
    # without any effect. Raises ConnectorError when it does not work.
    test_connection: ClassVar[Callable[["Connector", BaseModel], None] | None] = None

    @classmethod
    def has_compensate(cls) -> bool:
        return cls.compensate is not None

    def lease_seconds(self, config: BaseModel) -> float:
        """The call's own timeout (a config's ``timeout_seconds`` when it has
        one, else the connector's), plus the margin."""
        return getattr(config, "timeout_seconds", self.timeout_seconds) + lease_margin()

    def breaker_target(self, config: BaseModel) -> str | None:
        """The outside system a call reaches, for its circuit breaker and rate
        limit (``connectors/outbound/breakers.py``); None: it reaches nothing outside."""
        return None


def target_of(url: str, credential: str | None = None) -> str | None:
    """A breaker target: the credential's name when one is used (one account,
    one quota), else the URL's host[:port]."""
    if credential:
        return f"credential:{credential}"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return f"{host}:{port}" if port else host


class CompensationStep(Connector):
    """A connector's own ``compensate`` run as a step (a node whose
    compensation is "default"): same config, same side-effect class, one
    port. Made by ``compensation_step``, which gives each connector's undo a
    class of its own, since a connector's facts are class attributes."""

    def __init__(self, inner: Connector):
        if type(self) is CompensationStep:
            # The bare class has no Config of its own: a step built from it
            # would validate the undo's config against an empty model.
            raise TypeError("make a connector's undo with compensation_step(inner)")
        self.inner = inner

    def side_effect(self, config: BaseModel) -> SideEffect:
        return self.inner.side_effect(config)

    def lease_seconds(self, config: BaseModel) -> float:
        return self.inner.lease_seconds(config)

    def execute(self, ctx: Context) -> Result:
        if self.inner.compensate is None:
            raise not_sent(f"{self.inner.key} has no undo of its own")
        return self.inner.compensate(ctx)


_compensation_classes: dict[type[Connector], type[CompensationStep]] = {}


def _compensation_class(inner: type[Connector]) -> type[CompensationStep]:
    if inner in _compensation_classes:
        return _compensation_classes[inner]
    facts = {
        "key": inner.key,
        "label": f"Undo {inner.label}",
        "category": inner.category,
        "Config": inner.Config,
        "inline": inner.inline,
        "timeout_seconds": inner.timeout_seconds,
        "deferred_fields": inner.deferred_fields,
    }
    made = type(f"Undo{inner.__name__}", (CompensationStep,), facts)
    _compensation_classes[inner] = made
    return made


def compensation_step(inner: Connector) -> CompensationStep:
    """``inner``'s own ``compensate`` as a connector of its own."""
    return _compensation_class(type(inner))(inner)


def lease_margin() -> float:
    """Seconds a lease outlasts a call's timeout: room for a slow commit."""
    return float(getattr(settings, "LEDGERFLOW_LEASE_MARGIN_SECONDS", 30))


class UnknownConnector(KeyError):
    pass


_registry: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    if cls.key in _registry and _registry[cls.key] is not cls:
        raise ValueError(f"connector key {cls.key!r} is registered twice")
    _registry[cls.key] = cls
    return cls


def get(key: str) -> Connector:
    try:
        return _registry[key]()
    except KeyError:
        raise UnknownConnector(key) from None


def installed(key: str) -> bool:
    """Whether this installation registers the connector: a graph may name
    one it does not (a demo connector with ``LEDGERFLOW_DEMO`` off)."""
    return key in _registry


def all_connectors() -> dict[str, type[Connector]]:
    return dict(sorted(_registry.items()))


# --- the catalogue -------------------------------------------------------------


def config_fields(connector: type[Connector]) -> list[dict]:
    """The config's fields as a form would list them."""
    schema = connector.Config.model_json_schema()
    required = set(schema.get("required", []))
    fields = []
    for name, spec in schema.get("properties", {}).items():
        fields.append(
            {
                "name": name,
                "type": _type_of(spec),
                "required": name in required,
                "credential": name in connector.credential_fields,
                "description": spec.get("description", ""),
            }
        )
    return fields


def _type_of(spec: dict) -> str:
    if "enum" in spec:
        return "one of " + ", ".join(str(v) for v in spec["enum"])
    if "type" in spec:
        return spec["type"]
    if "anyOf" in spec:
        return " or ".join(sorted({s.get("type", "object") for s in spec["anyOf"]}))
    if "$ref" in spec:
        return "object"
    return "any"


def describe(connector: type[Connector]) -> dict:
    """What the catalogue (page and API) shows of one connector."""
    try:
        example = connector.Config.model_validate(connector.example_config)
        side_effect = connector().side_effect(example)
    except ValidationError:
        side_effect = connector.side_effect_class
    return {
        "key": connector.key,
        "label": connector.label,
        "category": connector.category,
        "icon": connector.icon,
        "description": connector.description,
        "side_effect": str(side_effect),
        # The class depends on the node's config (http.request: a GET has
        # none; a POST is unsafe unless the remote honours the key).
        "side_effect_varies": connector.side_effect is not Connector.side_effect,
        "is_trigger": connector.is_trigger,
        "inline": connector.inline,
        "ports": list(connector().ports_for(connector.example_config)),
        "dynamic_ports": connector.ports_for is not Connector.ports_for,
        "has_compensate": connector.has_compensate(),
        "has_test_connection": connector.test_connection is not None,
        "credential_fields": list(connector.credential_fields),
        "in_palette": connector.in_palette,
        "config_schema": connector.Config.model_json_schema(),
        "config_fields": config_fields(connector),
        "output_schema": connector.output_schema,
        "example_config": connector.example_config,
    }


def catalogue() -> list[dict]:
    """Every registered connector, by category then label."""
    entries = [describe(cls) for cls in all_connectors().values()]
    return sorted(entries, key=lambda e: (e["category"], e["label"]))
