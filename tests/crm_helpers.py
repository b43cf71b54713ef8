"""The fake CRM (fakeapi.crm) as tests drive it: a crm_oauth credential for
it, its control and report endpoints."""

import httpx

from connectors.credentials import store as credentials
from fakeapi.crm import CLIENT_ID, CLIENT_SECRET


def crm_credential(crm, name: str = "crm", *, secret: str = CLIENT_SECRET):
    host_port = crm.url.split("://", 1)[1]
    return credentials.credential_create(
        actor="system:test", name=name, type="crm_oauth",
        fields={"instance_url": crm.url, "token_url": f"{crm.url}/services/oauth2/token",
                "client_id": CLIENT_ID},
        secrets={"client_secret": secret}, allowed_hosts=[host_port],
    )  # fmt: skip


def control(crm, **settings) -> None:
    httpx.post(f"{crm.url}/control", json=settings).raise_for_status()


def report(crm) -> dict:
    return httpx.get(f"{crm.url}/report").json()
