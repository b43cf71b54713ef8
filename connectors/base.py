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

from pydantic import BaseModel, ConfigDict


class SideEffect(StrEnum):
    """What re-running a step may do to the outside world."""

    NONE = "none"  # reads only; safe to re-run
    IDEMPOTENT = "idempotent"  # the remote deduplicates on the idempotency key
    COMPENSATABLE = "compensatable"  # has an undo, and honours the key
    UNSAFE = "unsafe"  # re-running may repeat the effect


SAFE_TO_RERUN = {SideEffect.NONE, SideEffect.IDEMPOTENT, SideEffect.COMPENSATABLE}


class ConnectorError(Exception):
    """A failed call. ``retryable`` says whether trying again may succeed."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        details: dict | None = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.details = details or {}


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


@dataclass
class Result:
    output: Any = None
    port: str = "out"
    wait_until: dt.datetime | None = None  # the step waits for a durable timer
    # The step waits, with no timer, for a signal of this kind ("approval",
    # "subflow"); the driver's ``signal_step`` ends the wait.
    wait_for: str | None = None


class Connector:
    key: ClassVar[str]
    label: ClassVar[str]
    category: ClassVar[str]
    icon: ClassVar[str] = "box"
    Config: ClassVar[type[BaseModel]] = StrictConfig
    # Output ports; edges leave from one of these.
    ports: ClassVar[tuple[str, ...]] = ("out",)
    # A trigger starts a run; a flow has exactly one.
    is_trigger: ClassVar[bool] = False
    # Pure computation: evaluated inside the deciding transaction, no message.
    inline: ClassVar[bool] = False
    # Longest a call may take; the step's lease is longer than this.
    timeout_seconds: ClassVar[float] = 30.0
    output_schema: ClassVar[dict | None] = None
    # Config fields that hold a credential's name (never a secret): the
    # store decrypts it at run time; export and import keep the name.
    credential_fields: ClassVar[tuple[str, ...]] = ()

    def side_effect(self, config: BaseModel) -> SideEffect:
        return SideEffect.NONE

    def execute(self, ctx: Context) -> Result:
        raise NotImplementedError

    def lease_seconds(self, config: BaseModel) -> float:
        return self.timeout_seconds + lease_margin()


def lease_margin() -> float:
    """Seconds a lease outlasts a call's timeout: room for a slow commit."""
    from django.conf import settings

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


def all_connectors() -> dict[str, type[Connector]]:
    return dict(sorted(_registry.items()))
