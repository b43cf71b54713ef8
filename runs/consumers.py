"""The run page's websocket: it only says "this run changed"; the page then
fetches its live fragment over HTTP through the run page's view and its
permission check, so the socket carries no run data."""

from channels.db import database_sync_to_async  # type: ignore[import-untyped]
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # type: ignore[import-untyped]

from runs.live import group
from runs.models import Run

# Close codes the page's script reads: not allowed, no such run (retrying
# would not help either).
FORBIDDEN, NOT_FOUND = 4403, 4404


@database_sync_to_async
def _refusal(user, run_id: int) -> int | None:
    if not (user.is_authenticated and user.has_perm("runs.view_run")):
        return FORBIDDEN
    if not Run.objects.filter(pk=run_id).exists():
        return NOT_FOUND
    return None


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        self.group = None
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        refusal = FORBIDDEN if user is None else await _refusal(user, run_id)
        if refusal:
            await self.close(code=refusal)
            return
        self.group = group(run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_changed(self, message):
        await self.send_json({"event": "run-changed"})
