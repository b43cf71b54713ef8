"""The Breakers page: every external target's breaker, the steps it holds,
and whether the shared store (Redis) has been unreachable."""

import datetime as dt

from django.contrib import messages
from django.db.models import Count
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from config.roles import role_required
from connectors.outbound import breakers
from connectors.outbound.models import Breaker, StoreFault
from runs import decider
from runs.ground import clock
from runs.models import Step

# A fault this recent raises the flag on the page.
FAULT_FLAG_SECONDS = 300


def held_steps_by_target() -> dict[str, dict[str, int]]:
    """{target: {reason: steps held}} across all runs."""
    rows = (
        Step.objects.filter(status=decider.WAITING, wait_reason__in=decider.HOLD_REASONS)
        .values("wait_target", "wait_reason")
        .annotate(count=Count("id"))
        .order_by()
    )
    held: dict[str, dict[str, int]] = {}
    for row in rows:
        held.setdefault(row["wait_target"], {})[row["wait_reason"]] = row["count"]
    return held


@role_required("connectors.view_breaker")
def breaker_list(request):
    held = held_steps_by_target()
    rows = list(Breaker.objects.all())
    known = {row.target for row in rows}
    # Targets whose steps wait only on a rate limit have no breaker row yet.
    rows += [Breaker(target=t, state="closed") for t in sorted(held) if t not in known]
    now = clock.now()
    fault = StoreFault.objects.filter(store="redis").first()
    context = {
        "breakers": [(row, held.get(row.target, {})) for row in rows],
        "fault": fault,
        "fault_recent": bool(
            fault and now - fault.last_at < dt.timedelta(seconds=FAULT_FLAG_SECONDS)
        ),
        "can_reset": request.user.has_perm("connectors.reset_breaker"),
        "store": breakers.store().name,
        "now": now,
    }
    return render(request, "connectors/breakers.html", context)


@require_POST
@role_required("connectors.reset_breaker")
def breaker_reset(request):
    target = request.POST.get("target", "").strip()[:200]
    if not target:
        messages.error(request, "Name the breaker to reset.")
        return redirect("breakers:list")
    try:
        changed = breakers.reset(target, actor=f"user:{request.user.username}")
    except breakers.StoreDown as exc:
        messages.error(request, f"The breaker store is unreachable; nothing was reset ({exc}).")
        return redirect("breakers:list")
    if changed:
        messages.success(request, f"Breaker {target} reset to closed.")
    else:
        messages.error(request, f"Breaker {target} is already closed.")
    return redirect("breakers:list")
