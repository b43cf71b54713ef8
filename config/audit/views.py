"""The audit trail's pages: the filtered log and its streamed exports."""

from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from config.audit import export, trail
from config.roles import role_required

EXPORTS = {
    "csv": ("text/csv; charset=utf-8", export.csv_lines),
    "jsonl": ("application/x-ndjson; charset=utf-8", export.jsonl_lines),
}


@role_required("runs.view_audit_log")
def audit_log_moved(request: HttpRequest) -> HttpResponse:
    """The trail's earlier address, kept with its filters; checked like the
    trail itself, so it tells nobody else that the page exists."""
    query = request.META.get("QUERY_STRING", "")
    return redirect(reverse("audit_log") + (f"?{query}" if query else ""))


@role_required("runs.view_audit_log")
def audit_log(request: HttpRequest) -> HttpResponse:
    filters = trail.AuditFilters.from_params(request.GET)
    after, status = request.GET.get("after", "")[:200], 200
    try:
        page = trail.audit_page(filters, after=after)
    except trail.BadCursor as exc:
        filters.errors["after"] = str(exc)
        page, after, status = trail.audit_page(filters), "", 400
    if filters.errors:
        status = 400
    query = filters.query()
    next_query = {**query, "after": page.next_cursor} if page.next_cursor else {}
    context = {
        "filters": filters,
        "page": page,
        "after": after,
        "alerts": trail.chain_alerts(),
        "query": urlencode(query),
        "next_query": urlencode(next_query),
    }
    return render(request, "audit_log.html", context, status=status)


@role_required("runs.view_audit_log")
def audit_export(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in EXPORTS:
        raise Http404("The audit trail exports as CSV or JSONL.")
    filters = trail.AuditFilters.from_params(request.GET)
    if filters.errors:
        text = "\n".join(f"{name}: {error}" for name, error in filters.errors.items())
        return HttpResponse(text, status=400, content_type="text/plain; charset=utf-8")
    content_type, lines = EXPORTS[fmt]
    response = StreamingHttpResponse(lines(filters), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    return response
