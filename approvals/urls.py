from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("badge/", views.badge, name="badge"),
    path("queues/", views.queues, name="queues"),
    path("calendars/", views.calendars, name="calendars"),
    path("link/<str:token>/", views.decide_link, name="link"),
    path("tasks/<int:task_id>/", views.task_detail, name="task"),
    path("tasks/<int:task_id>/claim/", views.task_claim, name="claim"),
    path("tasks/<int:task_id>/release/", views.task_release, name="release"),
    path("tasks/<int:task_id>/comment/", views.task_comment, name="comment"),
    path("tasks/<int:task_id>/reassign/", views.task_reassign, name="reassign"),
    path("tasks/<int:task_id>/decide/", views.task_decide, name="decide"),
]
