from django.urls import path

from runs import views

app_name = "runs"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("dead-letters/", views.dead_letters, name="dead_letters"),
    path("dead-letters/replay/", views.dead_letters_replay, name="dead_letters_replay"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/cancel/", views.run_cancel, name="cancel"),
    path("<int:run_id>/replay/", views.run_replay, name="replay_run"),
    path("<int:run_id>/resume/", views.run_resume, name="resume"),
    path("<int:run_id>/steps/<str:node>/replay/", views.step_replay, name="replay"),
    path("<int:run_id>/steps/<str:node>/discard/", views.step_discard, name="discard"),
]
