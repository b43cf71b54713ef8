from django.urls import path

from runs import deadletter_views, views

app_name = "runs"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("dead-letters/", deadletter_views.dead_letters, name="dead_letters"),
    path(
        "dead-letters/preview/", deadletter_views.dead_letters_preview, name="dead_letters_preview"
    ),
    path("dead-letters/assign/", deadletter_views.dead_letters_assign, name="dead_letters_assign"),
    path(
        "dead-letters/annotate/",
        deadletter_views.dead_letters_annotate,
        name="dead_letters_annotate",
    ),
    path(
        "dead-letters/export.csv",
        deadletter_views.dead_letters_csv,
        name="dead_letters_csv",
    ),
    path(
        "dead-letters/export.jsonl",
        deadletter_views.dead_letters_jsonl,
        name="dead_letters_jsonl",
    ),
    path(
        "dead-letters/<int:run_id>/<str:node>/",
        deadletter_views.dead_letter_detail,
        name="dead_letter",
    ),
    path("dead-letters/replay/", views.dead_letters_replay, name="dead_letters_replay"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/cancel/", views.run_cancel, name="cancel"),
    path("<int:run_id>/replay/", views.run_replay, name="replay_run"),
    path("<int:run_id>/resume/", views.run_resume, name="resume"),
    path("<int:run_id>/steps/<str:node>/replay/", views.step_replay, name="replay"),
    path("<int:run_id>/steps/<str:node>/discard/", views.step_discard, name="discard"),
]
