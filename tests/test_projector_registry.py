"""The ground layer's projector registry: who gets which new events, and the
order in which ``rebuild_projections`` runs the apps' rebuilds."""

import io

import pytest
from django.core.management import call_command

from runs.ground import projectors
from runs.ground.models import Event
from runs.ground.projectors import ProjectorError


@pytest.fixture
def empty_registry(monkeypatch):
    """A registry of the test's own, so the apps' registrations stay intact."""
    monkeypatch.setattr(projectors, "_subscriptions", [])
    monkeypatch.setattr(projectors, "_rebuilds", {})


def event(stream: str, type_: str) -> Event:
    return Event(stream=stream, type=type_, payload={}, actor="user:olga")


def test_a_projector_gets_the_events_its_keys_name_in_stored_order(empty_registry):
    calls: list[list[str]] = []
    projectors.register_projector(
        ("approval.", "run.failed"), lambda events: calls.append([e.type for e in events])
    )
    projectors.project(
        [
            event("run:1", "step.started"),
            event("run:1", "approval.requested"),
            event("run:1", "run.failed"),
            event("run:1", "run.failedness"),  # an exact type is not a prefix
            event("run:1", "approvals.other"),  # "approval." is a prefix with its dot
        ]
    )
    assert calls == [["approval.requested", "run.failed"]]


def test_a_stream_prefix_selects_by_stream_and_no_match_means_no_call(empty_registry):
    calls: list[list[str]] = []
    projectors.register_projector("flow:", lambda events: calls.append([e.stream for e in events]))
    projectors.project([event("run:1", "run.started")])
    assert calls == []
    projectors.project([event("flow:7", "flow.created"), event("flows:8", "flow.created")])
    assert calls == [["flow:7"]]


def test_projectors_run_in_the_order_they_were_registered(empty_registry):
    order: list[str] = []
    projectors.register_projector("flow:", lambda events: order.append("flows"))
    projectors.register_projector("flow.published", lambda events: order.append("triggers"))
    projectors.project([event("flow:1", "flow.published")])
    assert order == ["flows", "triggers"]


def test_registering_the_same_projector_twice_calls_it_once(empty_registry):
    calls = []

    def project(events):
        calls.append(len(events))

    projectors.register_projector("flow:", project)
    projectors.register_projector("flow:", project)
    projectors.project([event("flow:1", "flow.created")])
    assert calls == [1]


def test_a_projector_needs_a_key(empty_registry):
    with pytest.raises(ProjectorError, match="stream prefix or an event type"):
        projectors.register_projector("", lambda events: None)
    with pytest.raises(ProjectorError, match="stream prefix or an event type"):
        projectors.register_projector((), lambda events: None)


def test_rebuilds_run_after_the_rebuilds_they_name(empty_registry):
    projectors.register_rebuild("approval tasks", lambda: 0, after=("runs",))
    projectors.register_rebuild("runs", lambda: 0, after=("flows",))
    projectors.register_rebuild("breakers", lambda: 0)
    projectors.register_rebuild("flows", lambda: 0)
    names = [name for name, _ in projectors.rebuilds()]
    assert sorted(names) == ["approval tasks", "breakers", "flows", "runs"]
    assert names.index("flows") < names.index("runs") < names.index("approval tasks")


def test_rebuilds_that_wait_on_each_other_or_on_nothing_registered_are_refused(empty_registry):
    projectors.register_rebuild("a", lambda: 0, after=("b",))
    with pytest.raises(ProjectorError, match="unregistered ones: b"):
        projectors.rebuilds()
    projectors.register_rebuild("b", lambda: 0, after=("a",))
    with pytest.raises(ProjectorError, match="wait on each other"):
        projectors.rebuilds()


def test_two_rebuilds_cannot_share_a_name(empty_registry):
    projectors.register_rebuild("flows", lambda: 0)
    with pytest.raises(ProjectorError, match="registered as 'flows'"):
        projectors.register_rebuild("flows", lambda: 1)


def test_every_app_registers_its_rebuild_and_the_command_walks_them(db):
    names = [name for name, _ in projectors.rebuilds()]
    assert sorted(names) == [
        "alert incidents", "approval tasks", "breakers", "business calendars", "credentials",
        "dead-letter triage", "flows", "runs", "teams", "triggers",
    ]  # fmt: skip
    # Runs name flow versions; approval tasks and trigger rows name runs or flows.
    assert names.index("flows") < names.index("runs") < names.index("approval tasks")
    assert names.index("flows") < names.index("triggers")
    assert names.index("teams") < names.index("flows")
    assert names.index("runs") < names.index("dead-letter triage")
    assert names.index("flows") < names.index("alert incidents")
    out = io.StringIO()
    call_command("rebuild_projections", stdout=out)
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == names
