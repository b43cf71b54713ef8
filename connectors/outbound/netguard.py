"""Outbound safety: connectors reach the public internet only.

A flow's author chooses URLs and hosts, so without a guard a flow could read
the cloud metadata service, the database or anything else on the platform's
own network. Every outbound connection is checked on the address it is about
to connect to (not on the name in the URL): the name is resolved once, every
address it resolves to is checked, and the socket connects to the checked
address, so a DNS answer that changes between check and connect (rebinding)
cannot slip past. Private, loopback, link-local, reserved, multicast and
unspecified addresses are refused unless ``host:port`` is on
``settings.LEDGERFLOW_OUTBOUND_ALLOWLIST``.
"""

import ipaddress
import socket
import ssl
from collections.abc import Iterable

import httpcore
import httpx
from django.conf import settings

from connectors.base import ConnectorError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(ConnectorError):
    """The destination is on the platform's own network; retrying cannot help."""

    def __init__(self, message: str):
        # Refused before connecting: nothing was sent.
        super().__init__(message, retryable=False, may_have_been_sent=False)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # An IPv6 address can carry an IPv4 one (::ffff:127.0.0.1, 6to4, Teredo,
    # NAT64); the carried address is where the packets end up.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_internal(ip: Address) -> bool:
    """Whether ``ip`` is an address the platform must not reach by default."""
    if isinstance(ip, ipaddress.IPv6Address):
        carried = _embedded_ipv4(ip)
        if carried is not None and is_internal(carried):
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global  # shared address space (100.64/10) and the like
    )


def _parse_entry(entry: str) -> tuple[str, int] | None:
    host, _, port = entry.strip().rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]").lower(), int(port)


def allowlist() -> set[tuple[str, int]]:
    entries: Iterable[str] = getattr(settings, "LEDGERFLOW_OUTBOUND_ALLOWLIST", [])
    return {parsed for parsed in map(_parse_entry, entries) if parsed is not None}


def _allowed(host: str, ip: Address, port: int, allowed: set[tuple[str, int]]) -> bool:
    return (host.strip("[]").lower(), port) in allowed or (str(ip), port) in allowed


def _resolve(host: str, port: int) -> list[Address]:
    bare = host.strip("[]")
    try:
        return [ipaddress.ip_address(bare)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectorError(
            f"cannot resolve {bare}: {exc}", retryable=True, may_have_been_sent=False
        ) from None
    addresses: list[Address] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def resolve_checked(host: str, port: int) -> str:
    """Resolve ``host`` and return the address to connect to, or refuse."""
    return checked_addresses(host, port)[0]


def checked_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, or refuse.

    Every address must pass, not only the first: a name that resolves to a
    public and an internal address is refused.
    """
    addresses = _resolve(host, port)
    if not addresses:
        raise ConnectorError(
            f"{host} resolves to no address", retryable=True, may_have_been_sent=False
        )
    allowed = allowlist()
    for ip in addresses:
        if is_internal(ip) and not _allowed(host, ip, port, allowed):
            shown = host if host.strip("[]") == str(ip) else f"{host} ({ip})"
            raise OutboundRefused(
                f"refused to connect to {shown} port {port}: it is an internal address; "
                f"an administrator can allow it with LEDGERFLOW_OUTBOUND_ALLOWLIST={host}:{port}"
            )
    return [str(ip) for ip in addresses]


class GuardedBackend(httpcore.SyncBackend):
    """Connects to the checked address of the name httpcore asks for.

    TLS still verifies the certificate against the name: httpcore passes the
    origin's host as ``server_hostname`` after this returns.
    """

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = checked_addresses(host, port)
        for ip in addresses[:-1]:
            try:  # "localhost" is ::1 and 127.0.0.1; a server may listen on one
                return super().connect_tcp(ip, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue
        return super().connect_tcp(addresses[-1], port, timeout, local_address, socket_options)


_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms; one verifying client context is
    # safe to share between connections and threads.
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self):
        context = _shared_ssl_context()
        super().__init__(verify=context)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=10,
            max_keepalive_connections=5,
            network_backend=GuardedBackend(),
        )


def guarded_client(timeout: float) -> httpx.Client:
    """An httpx client whose every connection passes the guard. It follows no
    redirects itself and ignores proxy variables (a proxy would connect for
    us, past the check); callers follow redirects hop by hop."""
    return httpx.Client(
        transport=GuardedTransport(),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
