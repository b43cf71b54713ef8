"""ASGI entry point: HTTP through Django, websockets through Channels."""

import atexit
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from runs import stepmetrics  # noqa: E402

# A web process runs pure steps inline too: when it exits (uvicorn's
# graceful stop, one of its --workers), its live gauges stop being summed.
atexit.register(stepmetrics.mark_dead)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
