"""The dead-letter badge in the navigation, for people who see runs."""

from runs.deadletters import dead_letter_count


def dead_letter_badge(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.has_perm("runs.view_run"):
        return {}
    return {"dead_letter_count": dead_letter_count()}
