"""Celery entry points of the runs app: thin, they load by id and call the
engine. Celery is the wake-up call; the database decides what is true."""

from celery import shared_task

from runs import chain_checks, concurrency, execute, services, subflows, sweeper
from runs.ground import clock
from runs.models import Heartbeat


@shared_task
def record_heartbeat(process: str) -> None:
    """Ticked by beat and executed by a worker: proves both are alive."""
    moment = clock.now()
    Heartbeat.objects.update_or_create(process=process, defaults={"seen_at": moment})
    Heartbeat.objects.update_or_create(process="worker", defaults={"seen_at": moment})


@shared_task
def continue_run(run_id: int) -> None:
    services.continue_run(run_id)


@shared_task
def execute_step(run_id: int, node: str, attempt: int) -> None:
    execute.execute_step(run_id, node, attempt)


@shared_task
def fire_timer(run_id: int, node: str, attempt: int, kind: str) -> None:
    services.fire_timer(run_id, node, attempt, kind)


@shared_task
def release_queued(flow_id: int, key: str) -> None:
    concurrency.release_queued(flow_id, key)


@shared_task
def sweep() -> None:
    sweeper.sweep(clock.now())


@shared_task
def signal_parent(child_run_id: int) -> None:
    subflows.signal_parent(child_run_id)


@shared_task
def cancel_orphans(parent_run_id: int) -> None:
    subflows.cancel_orphans(parent_run_id)


@shared_task
def verify_chains() -> None:
    """Ticked by beat: verify the next slice of each chain, alert on a break."""
    chain_checks.verify_chains()
