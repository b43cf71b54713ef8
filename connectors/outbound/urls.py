from django.urls import path

from connectors.outbound import views

app_name = "breakers"

urlpatterns = [
    path("", views.breaker_list, name="list"),
    path("reset/", views.breaker_reset, name="reset"),
]
