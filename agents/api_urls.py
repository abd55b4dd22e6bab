"""The REST API, included at /api/v1/ by project/urls.py. Ids are matched as any text (the `id`
converter) and checked in the view, so /runs/abc/ answers a JSON 404 like any other unknown run;
the schema declares them as integers (PATH_CONVERTER_OVERRIDES in settings)."""

from django.urls import path, register_converter

from accounts import api as accounts_api
from agents import api
from routing import api as routing_api


class IdConverter:
    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: int | str) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("runs/", api.RunListCreate.as_view(), name="api-run-list"),
    path("runs/<id:pk>/", api.RunDetail.as_view(), name="api-run-detail"),
    path("runs/<id:pk>/cancel/", api.RunCancel.as_view(), name="api-run-cancel"),
    path("workflows/", api.WorkflowListCreate.as_view(), name="api-workflow-list"),
    path("workflows/<id:pk>/", api.WorkflowDetail.as_view(), name="api-workflow-detail"),
    path("workflows/<id:pk>/cancel/", api.WorkflowCancel.as_view(), name="api-workflow-cancel"),
    path("agents/", api.AgentList.as_view(), name="api-agent-list"),
    path("providers/", routing_api.ProviderList.as_view(), name="api-provider-list"),
    path("budget/", routing_api.Budget.as_view(), name="api-budget"),
    path("keys/", accounts_api.KeyListCreate.as_view(), name="api-key-list"),
    path("keys/<id:pk>/", accounts_api.KeyRevoke.as_view(), name="api-key-detail"),
]
