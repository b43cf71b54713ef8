"""Steps cannot reach the platform's own network: internal addresses are
refused on the address actually connected to, before any byte is sent,
unless their host:port is on the allowlist. No test sends traffic beyond
127.0.0.1: every refusal happens before the connection."""

import ipaddress

import pytest

from connectors.outbound import netguard
from tests.connector_helpers import run_connector
from tests.localserver import Reply

INTERNAL_URLS = [
    "http://10.20.30.40/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/",
    "http://[::ffff:127.0.0.1]:8080/",
    "http://0.0.0.0:80/",
    "http://192.168.1.1/",
]


def get(url: str, **config):
    return run_connector("http.request", {"url": url, "timeout_seconds": 5, **config})


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_addresses_are_refused_and_not_retried(url, settings):
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = []
    with pytest.raises(netguard.OutboundRefused) as refused:
        get(url)
    assert refused.value.retryable is False
    assert "internal address" in str(refused.value)


def test_loopback_on_a_port_not_on_the_allowlist_is_refused_before_connecting(local_server):
    server = local_server({"/": lambda seen: Reply(200, {"ok": True})}, allow=False)
    with pytest.raises(netguard.OutboundRefused, match=f"127.0.0.1 port {server.port}"):
        get(server.url + "/")
    assert server.seen == []


def test_a_name_resolving_to_loopback_is_refused(local_server):
    server = local_server({"/": lambda seen: Reply(200, {"ok": True})}, allow=False)
    with pytest.raises(netguard.OutboundRefused, match=r"localhost \((127\.0\.0\.1|::1)\)"):
        get(f"http://localhost:{server.port}/")
    assert server.seen == []


def test_an_allowlisted_host_and_port_is_reached(local_server):
    server = local_server({"/ping": lambda seen: Reply(200, {"pong": True})})
    result = get(server.url + "/ping")
    assert result.output == {"status": 200, "body": {"pong": True}}
    assert [s.path for s in server.seen] == ["/ping"]


def test_the_allowlist_names_a_port_not_a_whole_host(local_server, settings):
    allowed = local_server({"/": lambda seen: Reply(200, {})})
    other = local_server({"/": lambda seen: Reply(200, {})}, allow=False)
    assert settings.LEDGERFLOW_OUTBOUND_ALLOWLIST[-1] == f"127.0.0.1:{allowed.port}"
    with pytest.raises(netguard.OutboundRefused):
        get(other.url + "/")
    assert other.seen == []


def test_a_redirect_into_an_internal_address_is_refused(local_server):
    target = local_server({"/secret": lambda seen: Reply(200, {"leak": True})}, allow=False)
    redirect = Reply(302, {}, headers={"Location": target.url + "/secret"})
    front = local_server({"/go": lambda seen: redirect})
    with pytest.raises(netguard.OutboundRefused):
        get(front.url + "/go")
    assert [s.path for s in front.seen] == ["/go"]
    assert target.seen == []


def test_a_redirect_to_the_metadata_service_is_refused(local_server):
    redirect = Reply(307, {}, headers={"Location": "http://169.254.169.254/latest/"})
    front = local_server({"/go": lambda seen: redirect})
    with pytest.raises(netguard.OutboundRefused, match="169.254.169.254"):
        get(front.url + "/go")


def test_resolve_checked_passes_public_addresses_and_refuses_mapped_loopback(settings):
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = []
    assert netguard.resolve_checked("93.184.215.14", 443) == "93.184.215.14"
    with pytest.raises(netguard.OutboundRefused):
        netguard.resolve_checked("::ffff:127.0.0.1", 5432)
    with pytest.raises(netguard.OutboundRefused):
        netguard.resolve_checked("localhost", 6379)


def test_resolve_checked_allows_what_the_allowlist_names(settings):
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = ["127.0.0.1:6543", "[::1]:7000"]
    assert netguard.resolve_checked("127.0.0.1", 6543) == "127.0.0.1"
    assert netguard.resolve_checked("::1", 7000) == "::1"
    with pytest.raises(netguard.OutboundRefused):
        netguard.resolve_checked("127.0.0.1", 6544)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", "224.0.0.1",
     "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "2002:7f00:1::1", "::"],
)  # fmt: skip
def test_internal_address_classes(address):
    assert netguard.is_internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_not_internal(address):
    assert not netguard.is_internal(ipaddress.ip_address(address))


def test_an_allowlisted_name_is_reached_by_that_name(local_server, settings):
    server = local_server({"/": lambda seen: Reply(200, {"ok": True})}, allow=False)
    settings.LEDGERFLOW_OUTBOUND_ALLOWLIST = [f"localhost:{server.port}"]
    assert get(f"http://localhost:{server.port}/").output["status"] == 200
