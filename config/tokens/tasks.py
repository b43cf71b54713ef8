from celery import shared_task

from config.tokens import idempotency


@shared_task
def forget_idempotent_answers() -> int:
    """Drop Idempotency-Key answers past their keeping time (beat, hourly)."""
    return idempotency.forget_expired()
