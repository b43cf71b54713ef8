"""What the flow page shows about the flow's trigger."""

from django.urls import reverse

from connectors.triggers import intake, schedules, topics
from connectors.triggers.models import Binding


def trigger_panel(request, flow) -> dict:
    binding = Binding.objects.filter(flow=flow).first()
    panel = {
        "binding": binding,
        "topics": topics.for_flow(binding),
        "deliveries": intake.recent_records(flow),
        "webhook_url": None,
        "upcoming": [],
    }
    if binding is None:
        return panel
    # The URL is the credential: only people who may edit flows see it.
    if binding.kind == "webhook" and binding.token and request.user.has_perm("flows.change_flow"):
        path = reverse("triggers:webhook", kwargs={"token": binding.token})
        panel["webhook_url"] = request.build_absolute_uri(path)
    if binding.kind == "schedule":
        panel["upcoming"] = schedules.upcoming(binding)
    return panel
