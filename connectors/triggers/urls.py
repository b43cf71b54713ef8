from django.urls import path

from connectors.triggers import views

app_name = "triggers"

urlpatterns = [
    path("hooks/<str:token>/", views.receive_webhook, name="webhook"),
    path("hooks/test/<str:token>/", views.receive_test_webhook, name="test_webhook"),
    path("topics/", views.topic_list, name="topics"),
    path("triggers/<slug:slug>/rotate-webhook/", views.rotate_webhook, name="rotate_webhook"),
]
