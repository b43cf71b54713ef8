from django.core.management.base import BaseCommand, CommandError

from runs.ground.eventstore import verify_all


class Command(BaseCommand):
    help = "Verify every event stream's hash chain and name the first broken event."

    def handle(self, *args, **options):
        checked = 0
        breaks = []
        for _name, problem in verify_all():
            checked += 1
            if problem:
                breaks.append(problem)
                self.stderr.write(f"BROKEN {problem}")
        if breaks:
            raise CommandError(f"{len(breaks)} of {checked} streams are broken; first: {breaks[0]}")
        self.stdout.write(f"ok: {checked} streams verified, every chain intact")
