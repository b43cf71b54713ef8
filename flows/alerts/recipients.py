"""Where a flow's failures are mailed."""

from flows.models import Flow, alert_addresses


def recipients_of(flow: Flow) -> list[str]:
    """The flow's ``alert_to`` addresses; blank, the owner's address (if the
    owner is active and has one)."""
    listed = alert_addresses(flow.alert_to)
    if listed:
        return listed
    owner = flow.owner
    if owner is not None and owner.is_active and owner.email:
        return [owner.email]
    return []
