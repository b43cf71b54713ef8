from django.urls import path

from connectors.triggers import views

app_name = "triggers"

urlpatterns = [
    path("hooks/<str:token>/", views.receive_webhook, name="webhook"),
    path("hooks/test/<str:token>/", views.receive_test_webhook, name="test_webhook"),
    path("topics/", views.topic_list, name="topics"),
    path("triggers/<slug:slug>/rotate-webhook/", views.rotate_webhook, name="rotate_webhook"),
    path("triggers/<slug:slug>/backfill/", views.backfill_new, name="backfill_new"),
    path(
        "triggers/<slug:slug>/backfills/<int:backfill_id>/",
        views.backfill_detail,
        name="backfill",
    ),
    path(
        "triggers/<slug:slug>/backfills/<int:backfill_id>/cancel/",
        views.backfill_cancel,
        name="backfill_cancel",
    ),
]
