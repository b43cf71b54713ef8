"""`ledgerflow`: login, flows push/pull, runs start/ls, dlq ls/replay.

Exit codes: 0 done (a waited run succeeded); 1 a waited run failed; 2 a
waited run did not finish in time; 3 the server refused or could not be
reached (the message says why)."""

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from flows.cli import config
from flows.cli.client import ApiFailure, Client

FINISHED_OK = {"succeeded"}
FINISHED_BAD = {"failed", "cancelled", "compensated"}
EXIT_FAILED, EXIT_TIMEOUT, EXIT_REFUSED = 1, 2, 3

out = Console()
err = Console(stderr=True)


class Group(click.Group):
    """Every ApiFailure becomes one line on stderr and exit code 3."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ApiFailure as exc:
            err.print(f"[red]Error:[/red] {exc}", highlight=False, markup=True)
            sys.exit(EXIT_REFUSED)


def client() -> Client:
    settings = config.load()
    return Client(settings["url"], settings["token"])


def read_json(path: str):
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise ApiFailure(0, "bad_file", f"Cannot read {path}: {exc.strerror}.") from None
    except ValueError as exc:
        raise ApiFailure(0, "bad_file", f"{path} is not JSON: {exc}.") from None


def table(rows: list[dict], columns: list[str], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    shown = Table(title=title)
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*(str(row.get(c, "")) for c in columns))
    out.print(shown)


@click.group(cls=Group)
def cli() -> None:
    """Ledgerflow from the command line."""


@cli.command()
@click.argument("url")
@click.option("--token", help="An API token (lf_...); asked for when left out.")
def login(url: str, token: str | None) -> None:
    """Check TOKEN against URL and store both in the config file (0600)."""
    token = token or click.prompt("API token", hide_input=True)
    Client(url, token).json("GET", "/runs", params={"limit": 1})
    where = config.save(url, token)
    out.print(f"Logged in to {url}; token stored in {where}")


@cli.group()
def flows() -> None:
    """Flows: push a file's graph, pull a flow as a file."""


@flows.command("push")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--slug", help="The flow to push to; the file's flow.slug when left out.")
@click.option("--publish", is_flag=True, help="Publish the draft once saved.")
def flows_push(file: str, slug: str | None, publish: bool) -> None:
    """Save FILE's graph (an exported flow, or {"graph": ...}) as the draft."""
    document = read_json(file)
    if not isinstance(document, dict) or not isinstance(document.get("graph"), dict):
        raise ApiFailure(0, "bad_file", f"{file} holds no graph object.")
    slug = slug or (document.get("flow") or {}).get("slug")
    if not slug:
        raise ApiFailure(0, "bad_file", f"{file} names no flow: pass --slug.")
    api = client()
    draft = api.json("GET", f"/flows/{slug}/draft")
    body = {"graph": document["graph"], "base_revision": draft["revision"]}
    saved = api.json("PUT", f"/flows/{slug}/draft", json=body)
    out.print(f"Saved the draft of {slug} as revision {saved['revision']}.")
    for problem in saved.get("errors") or []:
        err.print(f"[yellow]Problem:[/yellow] {problem}")
    if publish:
        published = api.json("POST", f"/flows/{slug}/publish",
                             json={"base_revision": saved["revision"]})  # fmt: skip
        out.print(f"Published {slug} version {published.get('number', published)}.")


@flows.command("pull")
@click.argument("slug")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Default: SLUG.json")
def flows_pull(slug: str, output: str | None) -> None:
    """Write the flow's export (facts and newest published graph) to a file."""
    text = client().request("GET", f"/flows/{slug}/export").text
    target = Path(output or f"{slug}.json")
    target.write_text(text)
    out.print(f"Wrote {target}")


@cli.group()
def runs() -> None:
    """Runs: start one (and wait for it), list them."""


@runs.command("start")
@click.argument("slug")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), help="A JSON file.")
@click.option("--version", type=int, help="A published version; default the newest.")
@click.option("--idempotency-key", help="Retries with the same key start one run.")
@click.option("--wait", is_flag=True, help="Wait for the run to finish; exit code by outcome.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_start(slug, input_file, version, idempotency_key, wait, timeout, as_json) -> None:
    """Start a run of SLUG's published version."""
    body: dict = {"input": read_json(input_file) if input_file else {}}
    if version is not None:
        body["version"] = version
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    api = client()
    run = api.json("POST", f"/flows/{slug}/runs", json=body, headers=headers)
    if not as_json:
        out.print(f"Started run {run['id']} of {slug} v{run['version_number']}.")
    if wait:
        run = wait_for(api, run, timeout, quiet=as_json)
    if as_json:
        click.echo(json.dumps(run, indent=2))
    if wait:
        sys.exit(outcome(run, quiet=as_json))


def wait_for(api: Client, run: dict, timeout: float, quiet: bool) -> dict:
    deadline = time.monotonic() + timeout
    delay = 0.2
    with err.status(f"Run {run['id']}: {run['status']}", spinner="dots") as status:
        while run["status"] not in FINISHED_OK | FINISHED_BAD:
            if time.monotonic() >= deadline:
                break
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 1.5, 2.0)
            run = api.json("GET", f"/runs/{run['id']}")
            if not quiet:
                status.update(f"Run {run['id']}: {run['status']}")
    return run


def outcome(run: dict, quiet: bool) -> int:
    if run["status"] in FINISHED_OK:
        code, line = 0, f"[green]Run {run['id']} succeeded.[/green]"
    elif run["status"] in FINISHED_BAD:
        why = run.get("error") or ""
        code, line = EXIT_FAILED, f"[red]Run {run['id']} {run['status']}.[/red] {why}"
    else:
        code = EXIT_TIMEOUT
        line = f"[yellow]Run {run['id']} is still {run['status']}: timed out.[/yellow]"
    (err if quiet else out).print(line, highlight=False)
    return code


@runs.command("ls")
@click.option("--status", help="Only runs in this status (failed, waiting, ...).")
@click.option("--flow", help="Only runs of this flow.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs_ls(status, flow, limit, as_json) -> None:
    """The newest runs."""
    params = {k: v for k, v in {"status": status, "flow": flow, "limit": limit}.items() if v}
    rows = client().json("GET", "/runs", params=params)
    table(rows, ["id", "flow", "version_number", "status", "started_by", "created_at", "error"],
          as_json, "Runs")  # fmt: skip


@cli.group()
def dlq() -> None:
    """Dead letters: list them, replay them."""


@dlq.command("ls")
@click.option("--json", "as_json", is_flag=True)
def dlq_ls(as_json) -> None:
    """The open dead letters, grouped by flow, node and error."""
    rows = client().json("GET", "/dead-letters")
    table(rows, ["group", "run_id", "node", "flow", "version_number", "error"],
          as_json, "Dead letters")  # fmt: skip


@dlq.command("replay")
@click.option("--group", "group", help="Replay every dead letter of this group.")
@click.option("--step", "steps", multiple=True, help="RUN_ID:NODE; may be repeated.")
@click.option("--newest", is_flag=True, help="Move the runs to the flow's newest version.")
@click.option("--json", "as_json", is_flag=True)
def dlq_replay(group, steps, newest, as_json) -> None:
    """Replay dead letters, on their own version or on the newest."""
    api = client()
    chosen = list(steps)
    if group:
        letters = api.json("GET", "/dead-letters")
        chosen += [f"{x['run_id']}:{x['node']}" for x in letters if str(x["group"]) == group]
        if not chosen:
            raise ApiFailure(0, "no_such_group", f"No open dead letter in group {group}.")
    if not chosen:
        raise ApiFailure(0, "nothing_chosen", "Name --group ID or --step RUN_ID:NODE.")
    body = {"steps": chosen, "version": "newest" if newest else "same"}
    result = api.json("POST", "/dead-letters/replay", json=body)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table(result["replayed"], ["run_id", "node", "version_number"], False, "Replayed")
    if result["refused"]:
        table(result["refused"], ["run_id", "node", "reason"], False, "Refused")


def main() -> None:
    cli()
