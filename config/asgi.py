"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

if os.environ.get("LEDGERFLOW_PROCESS") == "web":
    # With --workers, uvicorn's worker processes are children of its main
    # process, which supervisord's death takes down at once (SIGKILL, see
    # config/orphans.py): each worker goes too when its parent has gone.
    from config.orphans import watch_parent

    watch_parent()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from runs import stepmetrics  # noqa: E402


class Lifespan:
    """ASGI lifespan (uvicorn's ``--lifespan on``): at shutdown, after the
    last request, this process's live gauges stop being summed by /metrics
    (a web process runs pure steps inline too). uvicorn re-raises the stop
    signal once shut down, so an ``atexit`` hook would never run."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stepmetrics.mark_dead()
                await send({"type": "lifespan.shutdown.complete"})
                return


application = Lifespan(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
