"""Websocket routes. Live pages (runs, inbox) add theirs here."""

websocket_urlpatterns: list = []
