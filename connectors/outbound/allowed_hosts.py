"""Where a credential may be sent: its allowed hosts (like n8n's "allowed
domains"). A pattern is a host name, ``*.`` and a domain (its subdomains),
an IPv4 address or a bracketed IPv6 address, each with an optional
``:port``; without a port any port matches. A credential with no allowed
host goes nowhere: every connector checks the destination before it
connects, on the first call, each redirect or page, a replay and a
connection test alike."""

import ipaddress
import re

from connectors.base import ConnectorError

MAX_HOSTS = 50
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_PORT = re.compile(r"^(?P<host>\[[0-9a-f:.]+\]|[^:\[\]]+)(:(?P<port>\d{1,5}))?$")


class HostPatternError(ValueError):
    pass


def _split(text: str) -> tuple[str, int | None]:
    match = _PORT.match(text)
    if not match:
        raise HostPatternError(f"“{text}” is not a host or host:port")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise HostPatternError(f"“{text}”: the port must be 1 to 65535")
    return match.group("host"), int(port) if port else None


def clean_pattern(raw: str) -> str:
    text = (raw or "").strip().lower().rstrip(".")
    if "://" in text or "/" in text or "@" in text:
        raise HostPatternError(f"“{raw}”: give a host or host:port, not a URL")
    host, port = _split(text)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise HostPatternError(f"“{raw}” is not an IPv6 address") from None
    elif not _is_ipv4(host) and not _NAME.match(host):
        raise HostPatternError(f"“{raw}” is not a host name, *.domain or IP address")
    elif host.startswith("*.") and "." not in host[2:]:
        raise HostPatternError(f"“{raw}”: a wildcard needs a domain with a dot (*.example.com)")
    return host if port is None else f"{host}:{port}"


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def clean_patterns(raw: list[str] | str | None) -> list[str]:
    """Patterns from a list or text (one per line or comma-separated),
    normalised and deduplicated in order; HostPatternError names a bad one."""
    items = re.split(r"[\s,]+", raw) if isinstance(raw, str) else list(raw or [])
    cleaned: list[str] = []
    for item in items:
        if not str(item).strip():
            continue
        pattern = clean_pattern(str(item))
        if pattern not in cleaned:
            cleaned.append(pattern)
    if len(cleaned) > MAX_HOSTS:
        raise HostPatternError(f"at most {MAX_HOSTS} allowed hosts")
    return cleaned


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address as URLs write it
    return host


def matches(pattern: str, host: str, port: int) -> bool:
    wanted_host, wanted_port = _split(pattern)
    if wanted_port is not None and wanted_port != port:
        return False
    host = _normal_host(host)
    if wanted_host.startswith("*."):
        return host.endswith(wanted_host[1:])
    return host == wanted_host


def allows(patterns: list[str], host: str, port: int) -> bool:
    return any(matches(pattern, host, port) for pattern in patterns)


def check(credential, host: str, port: int) -> None:
    """Refuse, before anything is sent, to take ``credential`` (a
    UsableCredential) to ``host:port`` unless one of its patterns allows it."""
    patterns = list(credential.allowed_hosts)
    if allows(patterns, host, port):
        return
    where = f"{_normal_host(host)}:{port}"
    if not patterns:
        reason = "it has no allowed hosts, so it goes nowhere"
    else:
        reason = "its allowed hosts are " + ", ".join(patterns)
    raise ConnectorError(
        f"credential {credential.name!r} may not be sent to {where}: {reason} "
        "(add the host on the credential's page if it should)",
        retryable=False,
        may_have_been_sent=False,  # refused before connecting
    )
