"""Bearer tokens on the API: who calls, and what the token lets them do.

A token's rights are its scope intersected with its user's current role:
the user is loaded fresh on every call (a changed role or a deactivation
applies at once), and ``TokenScopeBackend`` refuses any permission outside
the scope before Django's own backend looks at the role. A superuser's
token gets no blanket pass: superuser is no role, so a token counts only
what the user's role group grants.
"""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja.security import HttpBearer

from config.roles import SCOPE_PERMISSIONS
from config.tokens import services
from runs.ground import acting


class TokenScopeBackend:
    """First in AUTHENTICATION_BACKENDS: authenticates no one; for a user
    acting through a token, a permission outside its scope is refused
    outright (raising stops Django asking the other backends)."""

    def authenticate(self, request, **credentials):
        return None

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        scope = getattr(user_obj, "token_scope", None)
        if scope is not None and perm not in SCOPE_PERMISSIONS[scope]:
            raise PermissionDenied
        return False

    def has_module_perms(self, user_obj, app_label) -> bool:
        return False


class BearerToken(HttpBearer):
    """``Authorization: Bearer lf_…``. Not a CSRF risk: a browser never
    sends this header on its own."""

    def authenticate(self, request: HttpRequest, token: str):
        found = services.usable(token)
        if found is None:
            return None
        user = found.user
        user.token_scope = found.scope
        user.api_token = found
        # Never a blanket pass through a token (see above); in memory only.
        user.is_superuser = False
        request.user = user
        acting.through(actor=f"user:{user.get_username()}", token=found.ref())
        return found


class ActingTokenMiddleware:
    """A fresh holder for the acting token around each request, so nothing
    of one request's token reaches the next one on the same thread."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        held = acting.begin()
        try:
            return self.get_response(request)
        finally:
            acting.end(held)
