from django.urls import path

from connectors.credentials import views

app_name = "credentials"

urlpatterns = [
    path("", views.credential_list, name="list"),
    path("new/", views.credential_create, name="create"),
    path("<int:credential_id>/", views.credential_edit, name="edit"),
    path("<int:credential_id>/delete/", views.credential_delete, name="delete"),
]
