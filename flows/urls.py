from django.urls import path, re_path

from flows import views
from runs import views as run_views

app_name = "flows"

urlpatterns = [
    path("", views.inventory_list, name="inventory"),
    path("new/", views.flow_create, name="create"),
    path("audit/", views.audit, name="audit"),
    path("audit.csv", views.audit_csv, name="audit_csv"),
    path("teams/", views.teams, name="teams"),
    path("teams/<int:team_id>/", views.team_edit, name="team_edit"),
    path("<slug:slug>/", views.flow_detail, name="detail"),
    path("<slug:slug>/edit/", views.flow_edit, name="edit"),
    path("<slug:slug>/graph/", views.flow_graph, name="graph"),
    path("<slug:slug>/editor/", views.flow_editor, name="editor"),
    path("<slug:slug>/runs/", run_views.run_start, name="start_run"),
    path("<slug:slug>/owner/", views.flow_change_owner, name="change_owner"),
    path("<slug:slug>/review/", views.flow_record_review, name="record_review"),
    re_path(
        r"^(?P<slug>[-\w]+)/(?P<action>activate|pause|retire)/$",
        views.flow_transition,
        name="transition",
    ),
]
