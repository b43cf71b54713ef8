"""The hosts a credential is already sent to, read from the flows that name
it: what the data migration gives each existing credential as its allowed
hosts, so nothing that works today stops working, and nothing else is
allowed. An SMTP or PostgreSQL credential is sent to its own server."""

from typing import Any

import httpx

from connectors.base import UnknownConnector, get
from connectors.credentials import store as credentials
from connectors.credentials.models import Credential
from flows.models import Flow, FlowVersion
from runs.expressions import has_expression

DEFAULT_API = "http://127.0.0.1:8765"  # payments and inventory's default base_url
OWN_SERVER = ("smtp", "postgres")


def _host_port(url: Any) -> str | None:
    if not isinstance(url, str) or not url or has_expression(url):
        return None
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if not parsed.host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{host.lower()}:{port}"


def _specs(graph: Any):
    for node in (graph or {}).get("nodes", []) if isinstance(graph, dict) else []:
        if isinstance(node, dict):
            for spec in (node, node.get("compensation")):
                if isinstance(spec, dict) and isinstance(spec.get("config"), dict):
                    yield spec.get("type", ""), spec["config"]


def _destination(type_: str, config: dict) -> str | None:
    if type_ in ("payments.charge", "inventory.reserve"):
        return _host_port(config.get("base_url") or DEFAULT_API)
    return _host_port(config.get("url") or config.get("base_url"))


def hosts_used(name: str, type_: str, fields: dict) -> list[str]:
    """host:port patterns for the credential ``name``, in a stable order."""
    found: set[str] = set()
    if type_ in OWN_SERVER and fields.get("host"):
        own = str(fields["host"]).strip().lower()
        found.add(f"[{own}]:{fields.get('port')}" if ":" in own else f"{own}:{fields.get('port')}")
    if type_ == "crm_oauth":  # sent to its token endpoint and its instance
        ends = (_host_port(fields.get(f)) for f in ("token_url", "instance_url"))
        found.update(end for end in ends if end)
    graphs = list(Flow.objects.exclude(draft_graph=None).values_list("draft_graph", flat=True))
    graphs += list(FlowVersion.objects.values_list("graph", flat=True))
    for graph in graphs:
        for node_type, config in _specs(graph):
            try:
                fields_naming = get(node_type).credential_fields
            except UnknownConnector:
                continue
            if any(config.get(field) == name for field in fields_naming):
                destination = _destination(node_type, config)
                if destination:
                    found.add(destination)
    return sorted(found)


def fill_allowed_hosts(*, actor: str = "system:migration") -> list[str]:
    """Give every credential without allowed hosts the hosts it is used with
    today; one line per credential, for the person running it."""
    report = []
    for credential in Credential.objects.order_by("name"):
        if credential.allowed_hosts:
            continue
        hosts = hosts_used(credential.name, credential.type, credential.fields)
        try:
            if hosts:
                credentials.credential_allow_hosts(
                    credential=credential, actor=actor, allowed_hosts=hosts
                )
        except credentials.CredentialError as exc:
            hosts = []
            report.append(f"{credential.name}: {exc}")
        report.append(
            f"{credential.name}: allowed hosts {', '.join(hosts)}"
            if hosts
            else f"{credential.name}: no flow uses it; it goes nowhere until hosts are set"
        )
    return report
