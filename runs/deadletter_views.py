"""The dead-letter inbox: groups for triage, one dead letter's page, the
preview of a bulk replay, assignments and notes, and exports. Replay and
discard themselves are the run pages' actions (``runs.views``)."""

import csv
import io
import json
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from config.roles import ADMIN, OPERATOR, role_required
from runs import deadletters, decider, migration, triage
from runs.models import DeadLetterAssignment, DeadLetterNote, Step

MAX_SELECTED = 500


def _actor(request) -> str:
    return f"user:{request.user.username}"


def chosen_steps(values: list[str]) -> tuple[list[tuple[int, str]], list[str]]:
    """``run:node`` values as pairs, and the values that name no step."""
    pairs, bad = [], []
    for value in values[:MAX_SELECTED]:
        run_id, _, node = value.partition(":")
        if run_id.isdigit() and node and len(node) <= 64:
            pairs.append((int(run_id), node))
        else:
            bad.append(value[:80])
    return pairs, bad


def _people():
    """Who a dead letter may be given to: the people who may act on it."""
    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=[OPERATOR, ADMIN])
        .distinct()
        .order_by("username")
    )


def _back(request, fallback: str):
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(fallback)


@role_required("runs.view_run")
def dead_letters(request):
    """Every dead letter, grouped by flow and error signature, critical
    (failed compensations) first, then the longest waiting."""
    filters = deadletters.DeadLetterFilters.from_params(request.GET)
    groups, truncated = deadletters.inbox_groups(filters)
    context = {
        "groups": groups,
        "filters": filters,
        "truncated": truncated,
        "limit": deadletters.INBOX_LIMIT,
        "total": sum(len(g.letters) for g in groups),
        "query": request.GET.urlencode(),
        "people": _people(),
        "can_act": request.user.has_perm("runs.change_run"),
    }
    return render(request, "runs/dead_letters.html", context)


@role_required("runs.view_run")
def dead_letter_detail(request, run_id: int, node: str):
    step = get_object_or_404(Step.objects.select_related("run__flow"), run_id=run_id, node_id=node)
    if step.status != decider.DEAD_LETTERED or step.run.is_test:
        messages.info(request, f"Step {node} of run {run_id} is no longer a dead letter.")
        return redirect("runs:detail", run_id=run_id)
    letter = deadletters.letters_of([step])[0]
    run = step.run
    newer = run.flow.published_version and run.flow.published_version != run.version_number
    context = {
        # Replaying on the newest version: what the move would do, or why not.
        "newest": migration.plan(run, node) if newer and not run.is_test else None,
        "letter": letter,
        "step": step,
        "run": step.run,
        "flow": step.run.flow,
        "breaker": deadletters.breaker_of(letter.target),
        "input_text": json.dumps(step.input, indent=2, ensure_ascii=False),
        "notes": DeadLetterNote.objects.filter(run_id=run_id, node_id=node),
        "assignment": DeadLetterAssignment.objects.filter(run_id=run_id, node_id=node).first(),
        "people": _people(),
        "inbox": reverse("runs:dead_letters"),
        "can_act": request.user.has_perm("runs.change_run"),
    }
    return render(request, "runs/dead_letter_detail.html", context)


@role_required("runs.change_run")
def dead_letters_preview(request):
    """What a bulk replay will do, before it is confirmed."""
    pairs, bad = chosen_steps(request.GET.getlist("step"))
    filters = deadletters.DeadLetterFilters.from_params({"group": request.GET.get("group", "")})
    bad += list(filters.errors.values())
    if filters.group:
        groups, _ = deadletters.inbox_groups(filters)
        pairs += [(lt.step.run_id, lt.step.node_id) for g in groups for lt in g.letters]
    preview = deadletters.replay_preview(pairs, newest=request.GET.get("version") == "newest")
    for value in bad:
        messages.error(request, value if value in filters.errors.values() else
                       f"{value!r} is not a step.")  # fmt: skip
    if not preview.letters:
        messages.error(request, "Select the dead letters to replay.")
        return redirect("runs:dead_letters")
    return render(request, "runs/dead_letters_preview.html", {"preview": preview})


def _triage(request, record, success: str):
    pairs, bad = chosen_steps(request.POST.getlist("step"))
    fallback = reverse("runs:dead_letters")
    if bad:
        messages.error(request, f"Not a step: {', '.join(repr(v) for v in bad[:5])}.")
        return _back(request, fallback)
    try:
        count = record(pairs)
    except triage.TriageRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success.format(count=count, s="s" if count != 1 else ""))
    return _back(request, fallback)


@require_POST
@role_required("runs.change_run")
def dead_letters_assign(request):
    assignee = request.POST.get("assignee", "")[:150]
    message = f"{{count}} dead letter{{s}} given to {assignee}." if assignee.strip() else (
        "{count} dead letter{s} no longer assigned.")  # fmt: skip

    def record(pairs):
        return triage.dead_letters_assign(steps=pairs, assignee=assignee, actor=_actor(request))

    return _triage(request, record, message)


@require_POST
@role_required("runs.change_run")
def dead_letters_annotate(request):
    text = request.POST.get("text", "")

    def record(pairs):
        return triage.dead_letters_annotate(steps=pairs, text=text, actor=_actor(request))

    return _triage(request, record, "Note added to {count} dead letter{s}.")


def _csv_lines(rows: Iterator[dict]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=deadletters.EXPORT_FIELDS)
    writer.writeheader()
    for row in rows:
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
    yield buffer.getvalue()


def _jsonl_lines(rows: Iterator[dict]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


EXPORTS = {
    "csv": ("text/csv; charset=utf-8", _csv_lines),
    "jsonl": ("application/x-ndjson; charset=utf-8", _jsonl_lines),
}


@role_required("runs.view_run")
def dead_letters_csv(request):
    return _export(request, "csv")


@role_required("runs.view_run")
def dead_letters_jsonl(request):
    return _export(request, "jsonl")


def _export(request, fmt: str):
    """The inbox's dead letters, with the same filters, streamed."""
    content_type, lines = EXPORTS[fmt]
    rows = deadletters.export_rows(deadletters.DeadLetterFilters.from_params(request.GET))
    response = StreamingHttpResponse(lines(rows), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="dead-letters.{fmt}"'
    return response
