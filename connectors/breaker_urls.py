from django.urls import path

from connectors import breaker_views

app_name = "breakers"

urlpatterns = [
    path("", breaker_views.breaker_list, name="list"),
    path("reset/", breaker_views.breaker_reset, name="reset"),
]
