"""Websocket routes. Live pages (runs, inbox) add theirs here."""

from approvals.routing import websocket_urlpatterns as approval_routes
from runs.routing import websocket_urlpatterns as run_routes

websocket_urlpatterns: list = [*approval_routes, *run_routes]
