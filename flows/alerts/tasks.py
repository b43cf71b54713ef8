"""Celery entry points of the alerts app: thin, they call the services."""

from celery import shared_task

from flows.alerts import services
from runs.ground import clock


@shared_task(
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def deliver_alert(outbox_id: int) -> None:
    """Mail one outbox row; a failure is retried with backoff, and after the
    last retry the sweep finds the row still pending."""
    services.deliver(outbox_id)


@shared_task
def sweep_outbox() -> None:
    """Ticked by beat: re-enqueue notifications left undelivered."""
    services.sweep(clock.now())
