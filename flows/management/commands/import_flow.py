import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from flows import transfer
from flows.services import FlowError


class Command(BaseCommand):
    help = "Create or update a flow from a JSON file; publishes its graph if it changed."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--as", dest="username", default="admin", help="acting user")

    def handle(self, *args, file: Path, username: str, **options):
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
