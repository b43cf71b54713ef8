from django.contrib.auth import views as auth_views
from django.urls import include, path

from config import login_views, metrics, views
from config.api import api
from config.audit import views as audit_views
from config.tokens import views as token_views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", login_views.login, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("audit/", audit_views.audit_log, name="audit_log"),
    path("audit/export.<str:fmt>", audit_views.audit_export, name="audit_export"),
    # The audit trail's earlier address: bookmarks and runbooks still name it.
    path("audit-log/", audit_views.audit_log_moved, name="audit_log_moved"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("profile/", token_views.profile, name="profile"),
    path("profile/tokens/", token_views.token_create, name="profile_token_create"),
    path(
        "profile/tokens/<int:token_id>/revoke/",
        token_views.token_revoke,
        name="profile_token_revoke",
    ),
    path("security/lockouts/", login_views.lockouts, name="lockouts"),
    path("security/lockouts/unlock/", login_views.unlock, name="lockout_unlock"),
    path("flows/", include("flows.urls")),
    path("runs/", include("runs.urls")),
    path("approvals/", include("approvals.urls")),
    path("connectors/", include("connectors.urls")),
    path("api/v1/", api.urls),
    path("breakers/", include("connectors.outbound.urls")),
    path("credentials/", include("connectors.credentials.urls")),
    path("", include("connectors.triggers.urls")),
]

handler403 = "config.views.permission_denied"
handler404 = "config.views.page_not_found"
handler500 = "config.views.server_error"
