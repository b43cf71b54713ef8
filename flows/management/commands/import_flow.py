import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from flows import services, transfer
from flows.services import FlowError


class Command(BaseCommand):
    help = "Create or update a flow from a JSON file; publishes its graph if it changed."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--as", dest="username", default="admin", help="acting user")
        parser.add_argument(
            "--activate",
            action="store_true",
            help="put a draft in service after importing (only active flows start runs)",
        )

    def handle(self, *args, file: Path, username: str, activate: bool, **options):
        try:
            document = json.loads(file.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        actor = get_user_model().objects.filter(username=username).first()
        if actor is None:
            raise CommandError(f"no user {username!r}; pass --as USERNAME")
        try:
            flow = transfer.import_flow(document, actor=actor)
        except (transfer.TransferError, FlowError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"imported {flow.slug} (published version {flow.published_version})")
        if activate and flow.status == "draft":
            try:
                flow = services.flow_transition(flow=flow, actor=actor, action="activate")
            except FlowError as exc:
                # The import stays; activation waits for the missing facts.
                raise CommandError(f"imported as a draft. {exc}") from None
        self.stdout.write(f"{flow.slug} is {flow.status}")
