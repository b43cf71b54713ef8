from django.urls import path

from runs import views

app_name = "runs"

urlpatterns = [
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/cancel/", views.run_cancel, name="cancel"),
    path("<int:run_id>/steps/<str:node>/replay/", views.step_replay, name="replay"),
    path("<int:run_id>/steps/<str:node>/discard/", views.step_discard, name="discard"),
]
