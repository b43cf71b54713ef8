"""The connector catalogue page: every registered connector, by category."""

from itertools import groupby

from django.shortcuts import render

from config.roles import role_required
from connectors.base import catalogue


@role_required("flows.view_flow")
def connector_catalogue(request):
    entries = [{**entry, "anchor": entry["key"].replace(".", "-")} for entry in catalogue()]
    categories = [
        (category, list(group)) for category, group in groupby(entries, key=lambda e: e["category"])
    ]
    return render(
        request, "connectors/catalogue.html", {"categories": categories, "count": len(entries)}
    )
