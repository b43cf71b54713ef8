from django.core.management.base import BaseCommand, CommandError

from flows import transfer
from flows.models import Flow


class Command(BaseCommand):
    help = "Print a flow (inventory facts and newest published graph) as canonical JSON."

    def add_arguments(self, parser):
        parser.add_argument("slug")

    def handle(self, *args, slug: str, **options):
        flow = Flow.objects.filter(slug=slug).select_related("owner", "team").first()
        if flow is None:
            raise CommandError(f"no flow with slug {slug!r}")
        self.stdout.write(transfer.export_flow(flow), ending="")
