"""Refuse request parameters no field can hold, before any view reads them."""

from django.http import HttpResponseBadRequest

NUL = "\x00"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class RefuseNulCharacters:
    """A NUL character cannot be stored in PostgreSQL text or jsonb, so a
    query or form parameter carrying one would end in a database error deep
    inside whichever view read it. Answer 400 here instead, for every page.
    Views that read their raw body themselves (webhooks, the API: the
    CSRF-exempt ones) keep their body unparsed, so it stays readable."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        params = [request.GET]
        raw_body_view = getattr(view_func, "csrf_exempt", False)
        if request.method == "POST" and request.content_type in FORMS and not raw_body_view:
            params.append(request.POST)
        for query in params:
            for name, values in query.lists():
                if NUL in name or any(NUL in value for value in values):
                    return HttpResponseBadRequest(
                        f"The parameter {name.replace(NUL, '')!r} contains a NUL character, "
                        "which no field accepts.",
                        content_type="text/plain; charset=utf-8",
                    )
        return None
