"""Bad input is a 400 with a message, never a 500.

Form fields refuse what the event log cannot store, and the webhook and API
check their bodies; this middleware covers the rest at one place:

- a path, query string or urlencoded form with a NUL character: PostgreSQL
  text refuses it, so any view that filters or stores the raw value (a
  webhook token, a slug) would fail;
- a value that reached the event store although it cannot be stored there
  (``EventPayloadError`` is raised before any write, so nothing is left
  half-done).

Multipart bodies are not read here: the webhook view reads them itself and
must see the raw body first.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponseBadRequest, JsonResponse

from runs.eventstore import EventPayloadError

FORM = "application/x-www-form-urlencoded"


def _has_nul(params) -> bool:
    return any(
        "\x00" in key or any("\x00" in value for value in values) for key, values in params.lists()
    )


def _bad_request(request, message: str):
    if request.path.startswith(("/api/", "/hooks/")):
        return JsonResponse({"error": message, "detail": message}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


def _form_has_nul(request) -> bool:
    if request.content_type != FORM:
        return False
    try:
        return _has_nul(request.POST)
    except SuspiciousOperation:
        return False  # too big or too many fields: the view answers that itself


def _refusal(request):
    if "\x00" in request.path or _has_nul(request.GET) or _form_has_nul(request):
        return _bad_request(
            request, "The address and parameters of a request may not contain NUL characters."
        )
    return None


class BadInputMiddleware:
    """Sync and async alike: the webhook view is async and must stay so
    (a delivery waiting for its Respond node holds no thread)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return _refusal(request) or self.get_response(request)

    async def _acall(self, request):
        # The checks read the parsed query and form only: no I/O.
        return _refusal(request) or await self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, EventPayloadError):
            return _bad_request(request, f"This request cannot be stored: {exception}")
        return None
