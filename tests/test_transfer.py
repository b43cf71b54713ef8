import io
import json

import pytest
from django.core.management import CommandError, call_command

from flows import transfer
from flows.models import Flow
from flows.teams import team_create
from tests.engine_helpers import activate, chain, transform

FILE = {
    "format": "ledgerflow/flow@1",
    "flow": {"slug": "refunds", "name": "Refunds", "owner": "olga", "team": "Payments",
             "tags": ["money"], "criticality": "high"},
    "graph": {"edges": [{"to": "a", "from": "start"}],
              "nodes": [{"type": "trigger.manual", "id": "start"}, transform("a", y=2, x=1)]},
}  # fmt: skip


def test_export_of_an_import_is_byte_identical_in_canonical_form(olga, tmp_path):
    team_create(name="Payments", actor=olga)
    path = tmp_path / "refunds.json"
    path.write_text(json.dumps(FILE))
    call_command("import_flow", str(path), "--as", "olga", stdout=io.StringIO())
    out = io.StringIO()
    call_command("export_flow", "refunds", stdout=out)
    assert out.getvalue() == transfer.canonical_text(transfer.canonical_document(FILE))
    # And the export imports to the same thing again, with no new version.
    path.write_text(out.getvalue())
    call_command("import_flow", str(path), "--as", "olga", stdout=io.StringIO())
    flow = Flow.objects.get(slug="refunds")
    assert flow.published_version == 1 and flow.owner.username == "olga"
    again = io.StringIO()
    call_command("export_flow", "refunds", stdout=again)
    assert again.getvalue() == out.getvalue()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "zapier"}, "not a Ledgerflow flow file"),
        ({"flow": {"slug": "x", "name": "X", "owner": "ghost"}}, "owner 'ghost' is not a user"),
        ({"flow": {"slug": "x", "name": "X", "colour": "red"}}, "unknown flow fields: colour"),
        (
            {"flow": {"slug": "x", "name": "X", "alert_to": "ops@example.com, nope"}},
            "flow.alert_to: “nope” is not an email address.",
        ),  # fmt: skip
        ({"graph": chain(transform("a", x="{{ steps.zz.output }}"))}, "steps.zz is not a step"),
    ],
)
def test_bad_files_are_refused_with_a_reason_and_change_nothing(olga, tmp_path, change, message):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({**FILE, "flow": {"slug": "x", "name": "X"}, **change}))
    with pytest.raises(CommandError, match=message):
        call_command("import_flow", str(path), "--as", "olga", stdout=io.StringIO())
    assert not Flow.objects.exists()


def test_start_run_command(olga, tmp_path, eager_celery):
    path = tmp_path / "f.json"
    graph = chain(transform("a", n="{{ trigger.n + 1 }}"))
    facts = {"slug": "calc", "name": "Calc", "owner": "olga", "runbook": "Rerun it.",
             "failure_mode": "Sums are late."}  # fmt: skip
    path.write_text(json.dumps({**FILE, "flow": facts, "graph": graph}))
    call_command("import_flow", str(path), "--as", "olga", stdout=io.StringIO())
    (tmp_path / "in.json").write_text('{"n": 41}')
    # An import is a draft: it runs once someone puts it in service.
    with pytest.raises(CommandError, match="“Calc” is a draft; it starts no runs until it is"):
        call_command("start_run", "calc", "--input", str(tmp_path / "in.json"))
    activate(Flow.objects.get(slug="calc"), olga)
    out = io.StringIO()
    with eager_celery():
        call_command("start_run", "calc", "--input", str(tmp_path / "in.json"), stdout=out)
    assert out.getvalue().strip().endswith("succeeded")
    with pytest.raises(CommandError, match="no flow with slug"):
        call_command("start_run", "nope", stdout=io.StringIO())
