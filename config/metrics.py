"""Prometheus metrics at /metrics, protected by ``LEDGERFLOW_METRICS_TOKEN``.

Two kinds of figures, each read where it is true:
- **Gauges from the database, at scrape time** (runs by flow and status,
  dead letters, approvals waiting and overdue, SLA breaches, breakers, the
  sweep's re-sends and expired leases) and the broker's queue depth. Every
  web process answers the same, since they all read one database.
- **Figures of what processes did** (step latency, attempts by outcome and
  steps running, by connector: runs/stepmetrics.py), observed by the
  processes that ran the steps, workers and web alike. They live in
  ``prometheus_client``'s multiprocess files (``PROMETHEUS_MULTIPROC_DIR``,
  set by config/settings.py before the library is imported), which any web
  process sums at scrape time.
"""

import hmac
import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from config.dashboard import approval_figures
from connectors.outbound.models import Breaker
from runs import decider, stepmetrics
from runs.ground.models import Event
from runs.models import Run, Step

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class DatabaseFigures:
    """A collector read at scrape time: no figure is older than the scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from self.runs()
        yield from self.dead_letters()
        yield from self.approvals()
        yield from self.breakers()
        yield from self.sweep()
        yield from self.queue()

    def runs(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "ledgerflow_runs", "Runs by flow and status.", labels=["flow", "status"]
        )
        # Test runs of drafts are the editor's, not the service's: left out.
        counted = (
            Run.objects.filter(is_test=False)
            .values_list("flow__slug", "status")
            .annotate(n=Count("id"))
        )
        for flow, status, n in counted.order_by():
            family.add_metric([flow, status], n)
        yield family

    def dead_letters(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "ledgerflow_dead_letters", "Dead-lettered steps waiting for a person.", labels=["flow"]
        )
        letters = Step.objects.filter(status=decider.DEAD_LETTERED, run__is_test=False)
        for flow, n in letters.values_list("run__flow__slug").annotate(n=Count("id")).order_by():
            family.add_metric([flow], n)
        yield family

    def approvals(self) -> Iterator[Metric]:
        figures = approval_figures()
        yield GaugeMetricFamily(
            "ledgerflow_approvals_waiting", "Approval tasks open.", value=figures["waiting"]
        )
        yield GaugeMetricFamily(
            "ledgerflow_approvals_overdue",
            "Open approval tasks past their due time.",
            value=figures["overdue"],
        )
        yield GaugeMetricFamily(
            "ledgerflow_sla_breaches",
            "SLA breaches recorded on approval tasks.",
            value=figures["breaches"],
        )

    def breakers(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "ledgerflow_breaker_state",
            "Circuit breaker per external target: 0 closed, 1 half-open, 2 open.",
            labels=["target"],
        )
        for target, state in Breaker.objects.values_list("target", "state"):
            family.add_metric([target], BREAKER_STATES.get(state, 0))
        yield family

    def sweep(self) -> Iterator[Metric]:
        resent = Step.objects.aggregate(n=Sum("redispatches"))["n"] or 0
        yield GaugeMetricFamily(
            "ledgerflow_sweep_redispatched",
            "Step messages the recovery sweep sent again (lost or taken by a dead worker).",
            value=resent,
        )
        expired = Event.objects.filter(type="step.lease_expired").count()
        yield GaugeMetricFamily(
            "ledgerflow_sweep_expired_leases",
            "Step leases that ran out (a worker died or hung mid-call).",
            value=expired,
        )

    def queue(self) -> Iterator[Metric]:
        depth = queue_depth()
        if depth is not None:
            yield GaugeMetricFamily(
                "ledgerflow_celery_queue_depth", "Messages waiting in the broker.", value=depth
            )


def queue_depth() -> int | None:
    """Messages waiting in the default queue: Redis's list length, or the
    embedded broker's queue folder (config/broker.py); ``None`` when the
    broker cannot be read, which the scrape leaves out rather than lies."""
    from config.celery import app

    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if "data_folder_in" in options:
        try:
            return len(os.listdir(options["data_folder_in"]))
        except OSError:
            return None
    queue = app.conf.task_default_queue or "celery"
    try:
        with app.connection_for_read() as connection:
            if connection.transport.driver_type != "redis":
                return None
            return int(connection.default_channel.client.llen(queue))
    except Exception:  # the broker is down: /readyz says so; metrics go on
        return None


def forget_dead_processes(folder: Path) -> None:
    """Live gauges (steps running) of processes that died without a word (a
    SIGKILL, the OOM killer: no shutdown hook ran) would count their steps
    as running for ever. The folder is this machine's, so a process id that
    names no process here is a dead one's."""
    for path in folder.glob("gauge_live*_*.db"):
        try:
            pid = int(path.stem.rsplit("_", 1)[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            stepmetrics.mark_dead(pid)
        except PermissionError:
            continue  # alive, another user's


def registry() -> CollectorRegistry:
    scrape = CollectorRegistry()
    scrape.register(DatabaseFigures())
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        forget_dead_processes(Path(folder))
        MultiProcessCollector(scrape)
    return scrape


def _authorised(request) -> bool:
    token = settings.LEDGERFLOW_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@never_cache
def metrics(request):
    if not settings.LEDGERFLOW_METRICS_TOKEN:
        return HttpResponse(
            "Metrics are off: set LEDGERFLOW_METRICS_TOKEN and scrape with "
            "'Authorization: Bearer <token>'.\n",
            status=404,
            content_type="text/plain",
        )
    if not _authorised(request):
        response = HttpResponse(
            "A metrics token is required: 'Authorization: Bearer <token>'.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
