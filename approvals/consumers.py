"""The inbox's websocket: it only says "something changed"; the page then
fetches its list and badge over HTTP, through the same views and
permission checks as any load, so the socket carries no task data."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from approvals.live import GROUP


@database_sync_to_async
def _may_read(user) -> bool:
    return user.is_authenticated and user.has_perm("approvals.view_approvaltask")


class InboxConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not await _may_read(user):
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def tasks_changed(self, message):
        await self.send_json({"event": "approvals-changed"})
