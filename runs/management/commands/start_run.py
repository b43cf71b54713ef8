import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from flows.models import Flow
from runs import driver


class Command(BaseCommand):
    help = "Start a run of a flow's newest published version with a JSON input."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--input", type=Path, help="JSON file with the trigger input")
        parser.add_argument(
            "--flow-version",
            dest="flow_version",
            type=int,
            help="a published version (default newest)",
        )

    def handle(self, *args, slug: str, input: Path | None, flow_version: int | None, **options):
        flow = Flow.objects.filter(slug=slug).first()
        if flow is None:
            raise CommandError(f"no flow with slug {slug!r}")
        payload = {}
        if input is not None:
            try:
                payload = json.loads(input.read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {input}: {exc}") from None
        try:
            run = driver.start_run(
                flow=flow, input=payload, actor="system:cli", version_number=flow_version
            )
        except driver.StartRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"run {run.pk}: {run.status}")
