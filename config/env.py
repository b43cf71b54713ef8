"""Tiny helpers that read settings from the environment.

A bad value raises ImproperlyConfigured at start-up, not at 3 a.m.
"""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_rate_limits(name: str) -> dict[str, dict]:
    """``host:port=10/20,credential:stripe=5``: per target, calls per second
    and an optional burst -> {target: {"per_second": 10.0, "burst": 20.0}}."""
    limits: dict[str, dict] = {}
    for entry in env_list(name):
        target, sep, rate = entry.rpartition("=")
        per_second, _, burst = rate.partition("/")
        try:
            values = {"per_second": float(per_second), "burst": float(burst or per_second)}
        except ValueError:
            values = {}
        if not sep or not target or not values or min(values.values()) <= 0:
            raise ImproperlyConfigured(
                f"{name}: {entry!r} is not target=per_second[/burst] with positive numbers"
            )
        limits[target] = values
    return limits
