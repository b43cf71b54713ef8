"""Platform pages: health, readiness, error pages."""

import datetime as dt

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from config import dashboard as figures
from config.celery import app
from config.roles import role_required
from config.tokens import errors as api_errors
from flows.models import Flow
from flows.vite import chart_bundle
from runs.ground import clock
from runs.models import Heartbeat

HEARTBEAT_STALE_AFTER = dt.timedelta(seconds=60)


@login_required
def home(request):
    return redirect("flows:inventory")


@never_cache
def healthz(request):
    """Liveness: the web process answers. No dependencies are checked."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any failure means not ready; say which
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_broker() -> str | None:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_scheduler(now) -> str | None:
    """Beat ticks a heartbeat task every few seconds and a worker runs it:
    a fresh "beat" heartbeat proves the scheduler and a worker both live.
    Without them schedules, SLA escalations and the recovery sweep stop."""
    beat = Heartbeat.objects.filter(process="beat").first()
    if beat is None:
        return "no heartbeat from the scheduler yet (is beat running, and a worker?)"
    age = now - beat.seen_at
    if age >= HEARTBEAT_STALE_AFTER:
        return f"the scheduler's last heartbeat was {age.total_seconds():.0f} s ago"
    return None


@never_cache
def readyz(request):
    """Readiness: the database and broker answer and the scheduler's
    heartbeat is fresh; every heartbeat is reported with its age."""
    now = clock.now()
    checks = {"database": _check_database(), "broker": _check_broker()}
    heartbeats = {}
    if checks["database"] is None:
        checks["scheduler"] = _check_scheduler(now)
        heartbeats = {
            beat.process: {
                "seen_at": beat.seen_at.isoformat(),
                "fresh": now - beat.seen_at < HEARTBEAT_STALE_AFTER,
            }
            for beat in Heartbeat.objects.all()
        }
    else:
        checks["scheduler"] = "unknown: the database does not answer"
    ok = all(problem is None for problem in checks.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {name: problem or "ok" for name, problem in checks.items()},
        "heartbeats": heartbeats,
        "embedded": settings.EMBEDDED,
    }
    return JsonResponse(body, status=200 if ok else 503)


@role_required("runs.view_run")
def dashboard(request):
    slug = request.GET.get("flow", "").strip()[:100]
    flow = Flow.objects.filter(slug=slug).first() if slug else None
    if slug and flow is None:
        # A clear answer for a mistyped or stale link, not an empty dashboard.
        return render(request, "dashboard_unknown_flow.html", {"slug": slug}, status=404)
    context = figures.dashboard(flow)
    context.update(
        flow=flow,
        flows=Flow.objects.exclude(status="retired").order_by("name").only("slug", "name"),
        bundle=chart_bundle(),
        window_hours=figures.WINDOW_HOURS,
    )
    return render(request, "dashboard.html", context)


def _api(request) -> bool:
    """Under /api/ the answer is the API's error shape, also where no
    endpoint matched (an id that is not a number, say)."""
    return request.path.startswith("/api/")


def permission_denied(request, exception=None):
    message = str(exception) if exception else ""
    if _api(request):
        return api_errors.response(403, message or "You may not do this.")
    return render(request, "403.html", {"message": message}, status=403)


def page_not_found(request, exception=None):
    if _api(request):
        return api_errors.response(404, "No such resource.")
    return render(request, "404.html", status=404)


def server_error(request):
    if _api(request):
        return api_errors.response(500, "The server failed; nothing was changed.", code="error")
    return render(request, "500.html", status=500)
