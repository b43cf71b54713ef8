"""WhiteNoise for an ASGI server.

WhiteNoise's middleware is synchronous only, so Django, serving async,
runs it on a thread and everything below it (every middleware after it and
every view) goes back to the event loop through ``async_to_sync``: two
thread hops on every request, a static file or not. This middleware serves
in both modes: served async, it looks the path up in WhiteNoise's table (a
dict, no I/O) on the loop, and only a static file goes to a thread.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        if self.autorefresh:
            # Development: WhiteNoise looks each path up on disk.
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self.serve)(static_file, request)
