"""The `ledgerflow` command-line client, run as a real process against a live
server over real HTTP: push, start and wait (exit code by outcome), lists as
JSON, the config file's mode, a bad token's message; and the client package
imports no Django."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runs import services
from runs.models import Run, Step
from tests.api_helpers import token_for
from tests.engine_helpers import READY, chain, publish, transform

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(live_server, adam, tmp_path):
    """Runs `python -m flows.cli ...` (what the `ledgerflow` script runs)
    with the server's URL and an admin's write token in the environment."""
    secret = token_for(adam, "admin")
    env = {**os.environ, "LEDGERFLOW_URL": live_server.url, "LEDGERFLOW_TOKEN": secret,
           "LEDGERFLOW_CONFIG": str(tmp_path / "config.json"), "PYTHONPATH": str(ROOT)}  # fmt: skip

    def run(*args, token=None, **extra_env):
        given = {**env, **extra_env}
        if token is not None:
            given["LEDGERFLOW_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", *args], cwd=tmp_path, env=given,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def popen(*args):
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    run.popen = popen
    run.secret = secret
    run.tmp = tmp_path
    return run


def _write(path: Path, document) -> str:
    path.write_text(json.dumps(document))
    return str(path)


def test_push_a_flow_from_a_file_then_start_a_run_and_wait_for_success(cli, adam, make_flow):
    flow = make_flow(adam, owner=adam, **READY)
    publish(adam, chain(transform("first", a="1")), slug=flow.slug)
    graph = chain(transform("pushed", b="2"))
    document = _write(cli.tmp / "flow.json", {"flow": {"slug": flow.slug}, "graph": graph})
    pushed = cli("flows", "push", document, "--publish")
    assert pushed.returncode == 0, pushed.stderr
    assert flow.versions.count() == 2
    assert flow.versions.order_by("-number").first().graph["nodes"][1]["id"] == "pushed"

    started = cli("runs", "start", flow.slug, "--input", _write(cli.tmp / "in.json", {}),
                  "--wait", "--json")  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    answer = json.loads(started.stdout)
    assert answer["status"] == "succeeded"
    assert Run.objects.get(pk=answer["id"]).version_number == 2

    pulled = cli("flows", "pull", flow.slug)
    assert pulled.returncode == 0, pulled.stderr
    pulled_graph = json.loads((cli.tmp / f"{flow.slug}.json").read_text())["graph"]
    assert [n["id"] for n in pulled_graph["nodes"]] == ["start", "pushed"]

    listed = cli("runs", "ls", "--status", "succeeded", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [answer["id"]]
    assert json.loads(cli("runs", "ls", "--status", "failed", "--json").stdout) == []


def test_a_failing_run_exits_1(cli, adam, make_flow):
    """The step dead-letters; while the client waits, an operator discards
    the dead letter, which fails the run: the client exits 1."""
    flow = make_flow(adam, owner=adam, **READY)
    publish(adam, chain(transform("boom", x="{{ 1 // 0 }}")), slug=flow.slug)
    waiting = cli.popen("runs", "start", flow.slug, "--wait", "--timeout", "90")
    for _ in range(600):
        step = Step.objects.filter(run__flow=flow, node_id="boom", status="dead_lettered").first()
        if step:
            break
        time.sleep(0.1)
    assert step is not None, "the step never dead-lettered"
    services.discard_dead_letter(step.run_id, "boom", actor="user:adam", reason="cli test")
    stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 1, stdout + stderr
    assert "failed" in stdout
    assert "Traceback" not in stdout + stderr
    listed = json.loads(cli("runs", "ls", "--status", "failed", "--json").stdout)
    assert [r["flow"] for r in listed] == [flow.slug]


def test_a_run_that_does_not_finish_in_time_exits_2(cli, adam, make_flow):
    flow = make_flow(adam, owner=adam, **READY)
    delay = {"id": "later", "type": "delay", "config": {"seconds": 3600}}
    publish(adam, chain(delay), slug=flow.slug)
    started = cli("runs", "start", flow.slug, "--wait", "--timeout", "1")
    assert started.returncode == 2, started.stdout + started.stderr
    assert "timed out" in started.stdout


def test_dead_letter_list_parses_as_json(cli):
    listed = cli("dlq", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_login_stores_the_token_with_mode_0600(cli, live_server):
    done = cli("login", live_server.url, "--token", cli.secret,
               LEDGERFLOW_URL="", LEDGERFLOW_TOKEN="")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    stored = cli.tmp / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"url": live_server.url, "token": cli.secret}
    # The stored login is used when the environment names none.
    listed = cli("runs", "ls", "--json", LEDGERFLOW_URL="", LEDGERFLOW_TOKEN="")
    assert listed.returncode == 0, listed.stderr


def test_a_bad_token_gives_a_clear_error_and_exit_3(cli, live_server):
    refused = cli("runs", "ls", token="lf_not-a-token")
    assert refused.returncode == 3
    assert "Traceback" not in refused.stdout + refused.stderr
    assert "HTTP 401" in refused.stderr and "token" in refused.stderr
    login = cli("login", live_server.url, "--token", "lf_not-a-token")
    assert login.returncode == 3
    assert not (cli.tmp / "config.json").exists()


def test_the_client_imports_no_django():
    """In a fresh interpreter where Django cannot be imported at all."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('django', 'ninja', 'celery'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import flows.cli.main\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('django', 'ninja')]\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
