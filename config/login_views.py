"""The login page, throttled, and the admin's page of locked-out addresses."""

import asyncio

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from config import throttle
from config.roles import role_required
from runs.views import actor_of

UNLOCK_PERMISSION = "axes.delete_accessattempt"


class LoginForm(AuthenticationForm):
    """Django's form sets the username's max_length after construction, so
    nothing enforces it: a longer name would reach the throttle's records
    (255 characters) and fail there. Refuse it on the field instead."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length))


_login_page = auth_views.LoginView.as_view(
    redirect_authenticated_user=True, authentication_form=LoginForm
)


async def login(request):
    """Django's login view, after the username's delay. Async, so a slowed
    login holds no worker thread while it waits."""
    if request.method == "POST":
        username = request.POST.get("username", "")[:150]
        delay = await sync_to_async(throttle.delay_for)(username)
        if delay:
            await asyncio.sleep(delay)
    return await sync_to_async(_login_page)(request)


@role_required(UNLOCK_PERMISSION)
def lockouts(request):
    return render(request, "lockouts.html", {"lockouts": throttle.current_lockouts()})


@require_POST
@role_required(UNLOCK_PERMISSION)
def unlock(request):
    address = request.POST.get("address", "").strip()[:45]
    if not address:
        messages.error(request, "Say which address to unlock.")
        return redirect("lockouts")
    removed = throttle.unlock(address, actor=actor_of(request))
    if removed:
        messages.success(request, f"{address} may log in again.")
    else:
        messages.info(request, f"{address} was not locked out.")
    return redirect("lockouts")
