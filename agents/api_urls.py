"""The REST API, included at /api/v1/ by project/urls.py. Ids are matched as text and checked in
the view, so /runs/abc/ answers a JSON 404 like any other unknown run."""

from django.urls import path

from agents import api
from routing import api as routing_api

urlpatterns = [
    path("runs/", api.RunListCreate.as_view(), name="api-run-list"),
    path("runs/<str:pk>/", api.RunDetail.as_view(), name="api-run-detail"),
    path("runs/<str:pk>/cancel/", api.RunCancel.as_view(), name="api-run-cancel"),
    path("workflows/", api.WorkflowCreate.as_view(), name="api-workflow-list"),
    path("workflows/<str:pk>/", api.WorkflowDetail.as_view(), name="api-workflow-detail"),
    path("workflows/<str:pk>/cancel/", api.WorkflowCancel.as_view(), name="api-workflow-cancel"),
    path("agents/", api.AgentList.as_view(), name="api-agent-list"),
    path("providers/", routing_api.ProviderList.as_view(), name="api-provider-list"),
    path("budget/", routing_api.Budget.as_view(), name="api-budget"),
]
