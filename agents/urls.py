"""The task pages, included at / by project/urls.py."""

from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("runs/", views.run_list, name="run_list"),
    path("runs/new/", views.run_new, name="run_new"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/live/", views.run_live, name="run_live"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("workflows/new/", views.workflow_new, name="workflow_new"),
    path("workflows/<int:pk>/", views.workflow_detail, name="workflow_detail"),
    path("workflows/<int:pk>/live/", views.workflow_live, name="workflow_live"),
    path("workflows/<int:pk>/cancel/", views.workflow_cancel, name="workflow_cancel"),
]
