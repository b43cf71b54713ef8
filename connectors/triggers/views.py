"""Trigger pages and the webhook endpoint. Thin: parse, authorise, call one
service, answer."""

import asyncio
import json
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config.roles import role_required
from connectors.triggers import backfills, testhooks, topics, webhook_receiver
from connectors.triggers.bindings import rotate_token
from connectors.triggers.forms import BackfillForm
from connectors.triggers.models import Backfill
from flows import services
from flows.models import Flow
from runs import decider
from runs.ground import clock

REFUSED_STATUS = {"draft": 409, "paused": 409, "retired": 410}
POLL_SECONDS = 0.05


@csrf_exempt
async def receive_webhook(request, token: str):
    """A delivery to a flow's webhook URL. No login: the token is the
    credential.

    All of a delivery's database work is one call on a thread (find the
    webhook, take the delivery, read the answer of a Respond step that ran
    inline from the state the start committed), so a delivery costs one hop
    between the event loop and a thread. Django's ASGI handler gives each
    request a thread-sensitive context of its own, so that thread is the
    request's own: deliveries do not queue behind each other. Async, so a
    delivery waiting for a Respond step that did not run inline holds no
    thread while it waits."""
    if request.method != "POST":
        return JsonResponse({"error": "POST deliveries to this URL"}, status=405)
    answer = await sync_to_async(_releasing(_receive))(request, token)
    if isinstance(answer, _Pending):
        answer = await _await_response(answer)
    return answer


def _releasing(function):
    """``function``, then the connection of the thread it ran on released:
    under ASGI each request makes its database calls on a thread of its own,
    so a persistent connection (CONN_MAX_AGE) would be left behind by every
    delivery and a burst would exhaust PostgreSQL's connection slots; in
    the web process, closing gives the connection back to its pool. Inside
    a transaction (a test's), the connection is not ours to close."""

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return call


@dataclass(frozen=True)
class _Pending:
    """A started run whose Respond step has not answered yet."""

    run_id: int
    node: str
    timeout: float


def _receive(request, token: str) -> HttpResponse | _Pending:
    hook = webhook_receiver.find(token)
    if hook is None:
        return JsonResponse({"error": "no webhook at this URL"}, status=404)
    body = _bounded_body(request, hook.config.max_body_bytes)
    if isinstance(body, JsonResponse):
        return body
    try:
        outcome = webhook_receiver.accept(hook, **_delivery(request, body))
    except webhook_receiver.Rejected as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return _answer(hook, outcome)


def _bounded_body(request, max_body_bytes: int) -> bytes | JsonResponse:
    """The body, or 413 when it is larger than the webhook allows."""
    limit = min(max_body_bytes, settings.LEDGERFLOW_WEBHOOK_MAX_BODY_BYTES)
    try:
        declared = int(request.headers.get("Content-Length") or 0)
        body = b"" if declared > limit else request.body
    except (ValueError, RequestDataTooBig):
        declared = limit + 1
    if declared > limit or len(body) > limit:
        return JsonResponse({"error": f"body is larger than {limit} bytes"}, status=413)
    return body


def _delivery(request, body: bytes) -> dict:
    return {
        "body": body,
        "content_type": request.content_type or "",
        "headers": request.headers,
        "query": request.GET,
        "signature_now": clock.now().timestamp(),
        "multipart": _multipart_fields(request),
    }


@csrf_exempt
async def receive_test_webhook(request, token: str):
    """A delivery to a webhook flow's test URL: a test run of its draft."""
    if request.method != "POST":
        return JsonResponse({"error": "POST deliveries to this URL"}, status=405)
    return await sync_to_async(_releasing(_receive_test))(request, token)


def _receive_test(request, token: str) -> HttpResponse:
    try:
        hook = testhooks.find(token)
        if hook is None:
            return JsonResponse(
                {"error": "no test webhook at this URL (or the draft's trigger is not a webhook)"},
                status=404,
            )
        body = _bounded_body(request, hook.config.max_body_bytes)
        if isinstance(body, JsonResponse):
            return body
        run = testhooks.accept(hook, **_delivery(request, body))
    except webhook_receiver.Rejected as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse({"run_id": run.pk, "test_run": True}, status=202)


def _multipart_fields(request) -> dict | None:
    if request.content_type != "multipart/form-data":
        return None
    try:
        fields = list(request.POST.lists())
        files = sum(len(values) for _, values in request.FILES.lists())
    except (MultiPartParserError, SuspiciousOperation, ValueError) as exc:
        raise webhook_receiver.Rejected(400, f"body is not a valid form: {exc}") from None
    parsed = sum(len(values) for _, values in fields) + files
    webhook_receiver.check_multipart(request.content_params.get("boundary"), request.body, parsed)
    return {name: values[0] if len(values) == 1 else values for name, values in fields}


def _answer(hook, outcome) -> HttpResponse | _Pending:
    if outcome.status == "refused":
        status = REFUSED_STATUS.get(outcome.flow_status, 409)
        return JsonResponse({"error": outcome.message}, status=status)
    if outcome.status == "stale" or outcome.first_outcome == "stale":
        return JsonResponse({"run_id": None, "stale": True}, status=200)
    if outcome.status == "duplicate":
        # The same body as the first answer; 200 says nothing new started.
        response = JsonResponse({"run_id": outcome.run_id}, status=200)
        response["Ledgerflow-Duplicate"] = "true"
        return response
    binding = hook.binding
    if hook.config.respond == "respond_node" and binding.respond_node:
        # The start has committed by now: if its Respond step ran inline,
        # the state the start committed holds the answer, and it goes out
        # at once; otherwise the delivery waits for the step.
        run_status, output = webhook_receiver.response_in(outcome.run_state, binding.respond_node)
        if output is not None:
            return _http_response(output, outcome.run_id)
        if run_status not in decider.RUN_TERMINAL:
            return _Pending(
                outcome.run_id, binding.respond_node, hook.config.response_timeout_seconds
            )
    return JsonResponse({"run_id": outcome.run_id}, status=202)


async def _await_response(pending: _Pending) -> HttpResponse:
    """Poll the run's Respond step until it answers, the run ends without
    it, or the timeout passes (then 202). Each poll is one short call on a
    thread; between polls the delivery holds none."""
    deadline = time.monotonic() + pending.timeout
    poll = sync_to_async(_releasing(webhook_receiver.response_of))
    while True:
        await asyncio.sleep(POLL_SECONDS)
        run_status, output = await poll(pending.run_id, pending.node)
        if output is not None:
            return _http_response(output, pending.run_id)
        if run_status in decider.RUN_TERMINAL or time.monotonic() >= deadline:
            return JsonResponse({"run_id": pending.run_id}, status=202)


def _http_response(output: dict, run_id: int) -> HttpResponse:
    body = output.get("body")
    if isinstance(body, str):
        response = HttpResponse(body, status=output["status"], content_type="text/plain")
    else:
        response = HttpResponse(
            json.dumps(body), status=output["status"], content_type="application/json"
        )
    for name, value in output.get("headers", {}).items():
        response[name] = value
    response["Ledgerflow-Run"] = str(run_id)
    return response


@role_required("flows.view_flow")
def topic_list(request):
    return render(request, "triggers/topics.html", {"topics": topics.inventory()})


@require_POST
@role_required("flows.change_flow")
def rotate_webhook(request, slug):
    flow = get_object_or_404(Flow, slug=slug)
    if not services.user_can_edit_flow(request.user, flow):
        raise PermissionDenied(f"Only members of the team {flow.team} may edit this flow.")
    try:
        rotate_token(flow, request.user)
    except services.FlowError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The webhook URL was rotated; the old URL no longer works.")
    return redirect("flows:detail", slug=flow.slug)


# --- backfills -------------------------------------------------------------------


def _backfill_flow(request, slug) -> Flow:
    flow = get_object_or_404(Flow.objects.select_related("team"), slug=slug)
    if not services.user_can_edit_flow(request.user, flow):
        raise PermissionDenied(f"Only members of the team {flow.team} may run this flow.")
    return flow


@role_required("runs.change_run")
def backfill_new(request, slug):
    """The backfill form; a POST previews (nothing starts) and a confirmed
    POST records the backfill."""
    flow = _backfill_flow(request, slug)
    form = BackfillForm(request.POST or None)
    context = {"flow": flow, "form": form, **backfills.schedule_facts(flow)}
    if request.method != "POST" or not form.is_valid():
        return render(request, "triggers/backfill_new.html", context, status=_status(form))
    data = form.cleaned_data
    args = {"start": data["start"], "end": data["end"], "max_in_flight": data["max_in_flight"]}
    try:
        plan = backfills.plan(flow, **args)
        if request.POST.get("confirm") and request.POST.get("expected") == str(plan.to_run):
            backfill = backfills.backfill_request(flow, actor=request.user, **args)
            messages.success(request, f"Backfill {backfill.pk} started.")
            return redirect("triggers:backfill", slug=flow.slug, backfill_id=backfill.pk)
    except backfills.BackfillError as exc:
        form.add_error(exc.field, str(exc))
        return render(request, "triggers/backfill_new.html", context, status=422)
    if request.POST.get("confirm"):
        context["changed"] = True  # fires were recorded since the preview
    context["plan"] = plan
    return render(request, "triggers/backfill_new.html", context)


def _status(form) -> int:
    return 422 if form.is_bound and form.errors else 200


@role_required("runs.change_run")
def backfill_detail(request, slug, backfill_id):
    flow = _backfill_flow(request, slug)
    backfill = get_object_or_404(Backfill, pk=backfill_id, flow=flow)
    context = {
        "flow": flow,
        "backfill": backfill,
        "progress": backfills.progress(backfill),
        "runs": backfills.recent_runs(backfill),
    }
    return render(request, "triggers/backfill.html", context)


@require_POST
@role_required("runs.change_run")
def backfill_cancel(request, slug, backfill_id):
    flow = _backfill_flow(request, slug)
    backfill = get_object_or_404(Backfill, pk=backfill_id, flow=flow)
    try:
        cancelled = backfills.backfill_cancel(backfill.pk, actor=request.user)
    except backfills.BackfillError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Backfill cancelled; {cancelled} runs in flight cancelled.")
    return redirect("triggers:backfill", slug=flow.slug, backfill_id=backfill.pk)
