"""Move the API keys that old ``payments.charge`` and ``inventory.reserve``
configs held (``api_key``) into credentials.

Each distinct key becomes one bearer credential (encrypted, its own stream);
every draft and published version that held it names the credential instead,
recorded as one ``flow.secrets_moved`` event per flow that the projection
applies to the draft and the version rows (a rebuild does the same), so
published versions stay runnable. The old events still hold the keys: the
chain cannot be rewritten, so ``find_logged_secrets`` lists them for rotation.
"""

import copy
from typing import Any

from django.db import transaction

from flows import graph as graph_module
from flows.models import Flow, FlowVersion
from flows.secrets import is_literal_secret
from runs.ground import projectors
from runs.ground.eventstore import NewEvent, append_many

KEYED_TYPES = ("payments.charge", "inventory.reserve")
OLD_FIELD = "api_key"


def _specs(graph: Any):
    """Each config dict of a keyed connector in a graph (node and compensation)."""
    for node in (graph or {}).get("nodes", []) if isinstance(graph, dict) else []:
        if not isinstance(node, dict):
            continue
        for spec in (node, node.get("compensation")):
            if isinstance(spec, dict) and spec.get("type") in KEYED_TYPES:
                config = spec.get("config")
                if isinstance(config, dict) and OLD_FIELD in config:
                    yield node.get("id", "?"), config


class Mover:
    def __init__(self, actor: str):
        self.actor = actor
        self.by_value: dict[str, str] = {}
        self.report: list[str] = []

    def credential_for(self, value: str, slug: str, node: str) -> str | None:
        from connectors.credentials import store as credentials

        if value in self.by_value:
            return self.by_value[value]
        name = f"migrated-{slug}-{node}"[:90]
        suffix = 1
        while credentials.Credential.objects.filter(name=name).exists():
            suffix += 1
            name = f"migrated-{slug}-{node}"[:90] + f"-{suffix}"
        try:
            credentials.credential_create(actor=self.actor, name=name, type="bearer",
                                          fields={}, secrets={"token": value})  # fmt: skip
        except credentials.CredentialError as exc:
            self.report.append(f"{slug}/{node}: the key could not become a credential ({exc}); "
                               "it was removed, set a credential on the step")  # fmt: skip
            return None
        self.by_value[value] = name
        self.report.append(f"{slug}/{node}: key moved to credential {name}")
        return name

    def rewrite(self, graph: dict, slug: str) -> dict | None:
        """A copy of ``graph`` with each key replaced by a credential's name;
        None when it holds none."""
        if not any(True for _ in _specs(graph)):
            return None
        graph = copy.deepcopy(graph)
        for node, config in _specs(graph):
            value = config.pop(OLD_FIELD)
            if isinstance(value, str) and is_literal_secret(value) and not config.get("credential"):
                name = self.credential_for(value.strip(), slug, node)
                if name:
                    config["credential"] = name
            elif value not in (None, ""):
                self.report.append(f"{slug}/{node}: api_key {value!r} is not a key; removed")
        return graph


def move_config_secrets(*, actor: str = "system:migration") -> list[str]:
    """Move every ``api_key`` out of drafts and published versions; one line
    per change made, for the person running it."""
    mover = Mover(actor)
    for flow in Flow.objects.order_by("pk"):
        with transaction.atomic():
            payload: dict = {"flow_id": flow.pk}
            draft = mover.rewrite(flow.draft_graph, flow.slug)
            if draft is not None:
                payload["draft"] = draft
            versions = []
            for version in FlowVersion.objects.filter(flow=flow).order_by("number"):
                graph = mover.rewrite(version.graph, flow.slug)
                if graph is not None:
                    versions.append({"number": version.number, "graph": graph,
                                     "graph_hash": graph_module.graph_hash(graph)})  # fmt: skip
            if draft is None and not versions:
                continue
            payload["versions"] = versions
            [event] = append_many([NewEvent(stream=f"flow:{flow.pk}", type="flow.secrets_moved",
                                            payload=payload, actor=actor)])  # fmt: skip
            projectors.project([event])
    return mover.report
