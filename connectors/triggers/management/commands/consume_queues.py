"""Read the RabbitMQ queues named by flows' queue triggers (its own process
line in platform/Procfile). Without RABBITMQ_URL it says so and idles, so a
process runner that stops everything when one process exits keeps going."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from connectors.triggers.queues import QueueConsumer


class Command(BaseCommand):
    help = "Consume the RabbitMQ queues of flows with a queue trigger."

    def add_arguments(self, parser):
        parser.add_argument(
            "--refresh-seconds",
            type=float,
            default=5.0,
            help="how often to look for flows that start or stop listening",
        )

    def handle(self, *args, refresh_seconds: float, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if not settings.RABBITMQ_URL:
            self.stdout.write(
                "Queue triggers are off: RABBITMQ_URL is not set. Idling; set it and restart"
                " this process to consume flows' queues."
            )
            stop.wait()
            return
        self.stdout.write(f"Consuming flows' queues on {_without_password(settings.RABBITMQ_URL)}")
        QueueConsumer(settings.RABBITMQ_URL, stop=stop, refresh_seconds=refresh_seconds).run()


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        return f"{scheme}://{credentials.split(':')[0]}:***@{host}"
    return url
