"""What an operator may change when replaying a dead letter with an edited
input. The edit replaces the step's config for that replay, so it is an
edit of the flow: it needs the right to edit the flow (a team that restricts
edits keeps its flows to its members). It may not change a credential field
(the edit would choose whose secret is sent), nor write a secret into the
input (the edit is recorded in the log for good)."""

from typing import Any

from connectors.base import Connector
from flows.secrets import ADVICE, secret_paths
from flows.services import user_can_edit_flow
from runs import driver
from runs.graph_facts import connector_of
from runs.models import Run, Step


class EditRefused(Exception):
    """The edited input is not accepted; the message says why."""


class EditForbidden(EditRefused):
    """The person may not edit this flow's steps at all."""


def _credential_fields(run: Run, node: str) -> tuple[str, ...]:
    connector = connector_of(driver.graph_for(run), node)
    inner: Connector = getattr(connector, "inner", connector)
    return type(inner).credential_fields


def _original(run: Run, node: str) -> dict:
    step = Step.objects.filter(run=run, node_id=node).first()
    if step is not None and isinstance(step.input, dict):
        return step.input
    config = driver.graph_for(run).nodes[node].get("config")
    return config if isinstance(config, dict) else {}


def check_edit(user, run: Run, node: str, edited_input: Any) -> None:
    """Raise EditForbidden or EditRefused unless ``user`` may replay
    ``node`` of ``run`` with ``edited_input``."""
    if not user_can_edit_flow(user, run.flow):
        team = run.flow.team.name if run.flow.team else "its team"
        raise EditForbidden(
            f"Editing a step's input edits the flow “{run.flow.name}”, which only members of "
            f"{team} may edit: replay the step unedited, or ask one of them."
        )
    if node not in driver.graph_for(run).nodes:
        return  # the replay itself says the step is unknown
    original = _original(run, node)
    for field in _credential_fields(run, node):
        if edited_input.get(field) != original.get(field):
            raise EditRefused(
                f"An edited input cannot change the credential field “{field}” "
                f"(it stays {original.get(field)!r}): a replay may not choose whose secret "
                "is sent, or where."
            )
    found = list(secret_paths(edited_input))
    if found:
        raise EditRefused(f"field “{found[0]}”: {ADVICE}.")
