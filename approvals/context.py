"""The inbox badge in the navigation, for users who review."""

from django.conf import settings

from approvals import selectors


def inbox_badge(request) -> dict:
    user = getattr(request, "user", None)
    if (
        user is None
        or not user.is_authenticated
        or not user.has_perm("approvals.view_approvaltask")
    ):
        return {}
    return {
        "inbox_count": selectors.badge_count(user),
        "live_updates": settings.LEDGERFLOW_LIVE_UPDATES,
        "inbox_poll_seconds": settings.LEDGERFLOW_INBOX_POLL_SECONDS,
    }
