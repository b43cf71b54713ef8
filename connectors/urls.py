from django.urls import path

from connectors import views

app_name = "connectors"

urlpatterns = [
    path("", views.connector_catalogue, name="catalogue"),
]
