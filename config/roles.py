"""Roles are Django groups with a fixed set of permissions.

Operators build, run and edit flows; reviewers read the inventory and decide
approval tasks; admins see and audit everything. Every view states the
permission it needs with ``role_required``; the roles matrix test holds each
URL to it.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.models import Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

OPERATOR, REVIEWER, ADMIN = "Operator", "Reviewer", "Admin"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    OPERATOR: [
        "flows.view_flow",
        "flows.add_flow",
        "flows.change_flow",
        "runs.view_run",
        "runs.change_run",
        "connectors.view_breaker",
        "connectors.manage_credentials",
    ],
    REVIEWER: [
        "flows.view_flow",
        "runs.view_run",
        "approvals.view_approvaltask",
        "approvals.decide_task",
    ],
    ADMIN: [
        "flows.view_flow",
        "flows.add_flow",
        "flows.change_flow",
        "runs.view_run",
        "runs.change_run",
        "flows.audit_inventory",
        "flows.manage_teams",
        "runs.view_audit_log",
        "approvals.view_approvaltask",
        "approvals.decide_task",
        "approvals.manage_queues",
        "connectors.view_breaker",
        "connectors.reset_breaker",
        "connectors.manage_credentials",
        # django-axes' own permission: see and lift login lockouts.
        "axes.delete_accessattempt",
    ],
}


# API tokens carry a scope; a token may do what its scope allows AND its
# user's current role allows (config/tokens/auth.py). Reading is the
# permissions that only show things; each wider scope adds one role's.
SCOPES = ("read", "operate", "review", "admin")
READ_PERMISSIONS = [
    "flows.view_flow",
    "runs.view_run",
    "approvals.view_approvaltask",
    "connectors.view_breaker",
    "flows.audit_inventory",
    "runs.view_audit_log",
]
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(READ_PERMISSIONS),
    "operate": frozenset(READ_PERMISSIONS + ROLE_PERMISSIONS[OPERATOR]),
    "review": frozenset(READ_PERMISSIONS + ROLE_PERMISSIONS[REVIEWER]),
    "admin": frozenset(p for perms in ROLE_PERMISSIONS.values() for p in perms),
}


def ensure_roles(**_kwargs) -> None:
    """Create the role groups and give them exactly their permissions.

    Runs after every migrate, so a new permission reaches existing groups.
    """
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is None:
                # Permissions of an app not yet migrated; the next post_migrate
                # (sent once per app) completes the set.
                continue
            wanted.append(found)
        group.permissions.set(wanted)


def user_role(user) -> str | None:
    if not user.is_authenticated:
        return None
    names = {g.name for g in user.groups.all()}
    for role in (ADMIN, OPERATOR, REVIEWER):
        if role in names:
            return role
    return "Superuser" if user.is_superuser else None


def refusal(user, permission: str) -> str | None:
    """Why ``user`` may not do what ``permission`` guards, or None. The one
    check of pages and API alike; a token's user is held to its scope."""
    if user.has_perm(permission):
        return None
    scope = getattr(user, "token_scope", None)
    if scope and permission not in SCOPE_PERMISSIONS[scope]:
        return f"This token's scope ({scope}) does not allow this ({permission})."
    return f"Your role does not allow this ({permission})."


def require(user, permission: str) -> None:
    """For the API: PermissionDenied (403) unless ``user`` may."""
    why = refusal(user, permission)
    if why:
        raise PermissionDenied(why)


def role_required(permission: str) -> Callable:
    """Anonymous users go to the login page; others need ``permission`` (403)."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(permission):
                raise PermissionDenied(f"Your role does not allow this ({permission}).")
            return view(request, *args, **kwargs)

        wrapper.required_permission = permission
        return wrapper

    return decorator


def role_context(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "role": user_role(user),
        "can_edit_flows": user.has_perm("flows.change_flow"),
        "can_audit": user.has_perm("flows.audit_inventory"),
        "can_manage_teams": user.has_perm("flows.manage_teams"),
        "can_read_audit_log": user.has_perm("runs.view_audit_log"),
        "can_review": user.has_perm("approvals.view_approvaltask"),
        "can_manage_queues": user.has_perm("approvals.manage_queues"),
        "can_view_breakers": user.has_perm("connectors.view_breaker"),
    }
