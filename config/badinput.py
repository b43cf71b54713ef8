"""Bad input is a 400 with a message, never a 500.

Form fields refuse what the event log cannot store, and the webhook and API
check their bodies; this middleware covers the rest at one place:

- a path, query string or form with a NUL character: PostgreSQL text
  refuses it, so any view that filters or stores the raw value (a webhook
  token, a slug, a cancel reason) would fail deep inside it;
- a value that reached the event store although it cannot be stored there
  (``EventPayloadError`` is raised before any write, so nothing is left
  half-done).

Multipart forms are read only once the view is known, and not for views
that read their raw body themselves (webhooks, the API: the CSRF-exempt
ones), so their body stays unparsed for them.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponseBadRequest, JsonResponse

from config.tokens.errors import response as api_error
from runs.ground.eventstore import EventPayloadError

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def _nul_parameter(params) -> str | None:
    """The name of the first parameter holding a NUL character, if any."""
    for key, values in params.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return key.replace("\x00", "")
    return None


def _nul_message(name: str) -> str:
    return f"The parameter {name!r} contains a NUL character, which no field accepts."


def _bad_request(request, message: str):
    if request.path.startswith("/api/"):
        return api_error(400, message)
    if request.path.startswith("/hooks/"):
        return JsonResponse({"error": message, "detail": message}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


def _form_nul_parameter(request, content_types) -> str | None:
    if request.method != "POST" or request.content_type not in content_types:
        return None
    try:
        return _nul_parameter(request.POST)
    except SuspiciousOperation:
        return None  # too big or too many fields: the view answers that itself


def _refusal(request):
    if "\x00" in request.path:
        return _bad_request(request, "The address of a request may not contain NUL characters.")
    name = _nul_parameter(request.GET)
    if name is None:
        name = _form_nul_parameter(request, (FORM,))
    return None if name is None else _bad_request(request, _nul_message(name))


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

    def process_view(self, request, view_func, view_args, view_kwargs):
        if getattr(view_func, "csrf_exempt", False):
            return None  # reads its raw body itself
        name = _form_nul_parameter(request, (MULTIPART,))
        return None if name is None else _bad_request(request, _nul_message(name))

    def process_exception(self, request, exception):
        if isinstance(exception, EventPayloadError):
            return _bad_request(request, f"This request cannot be stored: {exception}")
        return None
