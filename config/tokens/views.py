"""The profile page: a person's API tokens, made and revoked here. A new
token's secret is shown in the answer to the form that made it, once."""

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from config.roles import SCOPE_PERMISSIONS, SCOPES, user_role
from config.tokens import services
from config.tokens.models import ApiToken
from runs.ground import clock

EXPIRY_DAYS = {"": None, "7": 7, "30": 30, "90": 90, "365": 365}


def _context(request, **extra) -> dict:
    return {
        "tokens": ApiToken.objects.filter(user=request.user),
        "scopes": SCOPES,
        "scope_permissions": {s: sorted(SCOPE_PERMISSIONS[s]) for s in SCOPES},
        "expiry_choices": [
            ("", "never"),
            ("7", "7 days"),
            ("30", "30 days"),
            ("90", "90 days"),
            ("365", "a year"),
        ],  # fmt: skip
        "my_role": user_role(request.user),
        "now": clock.now(),
        "form": {"name": "", "scope": "read", "expires": "30"},
        **extra,
    }


@never_cache
@login_required
def profile(request):
    return render(request, "profile.html", _context(request))


@never_cache
@require_POST
@login_required
def token_create(request):
    form = {key: request.POST.get(key, "").strip() for key in ("name", "scope", "expires")}
    days = EXPIRY_DAYS.get(form["expires"], "bad")
    try:
        if days == "bad":
            raise services.TokenRefused("Choose an expiry from the list.")
        expires_at = clock.now() + dt.timedelta(days=days) if days else None
        token, secret = services.token_create(
            user=request.user, name=form["name"], scope=form["scope"], expires_at=expires_at
        )
    except services.TokenRefused as exc:
        return render(request, "profile.html", _context(request, form=form, error=str(exc)),
                      status=400)  # fmt: skip
    # The secret is in this answer only: the database keeps its digest.
    return render(request, "profile.html", _context(request, created=token, secret=secret))


@require_POST
@login_required
def token_revoke(request, token_id: int):
    try:
        token = services.token_revoke(token_id=token_id, user=request.user)
    except services.TokenRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Token “{token.name}” revoked: it opens nothing any more.")
    return redirect("profile")
