"""The savings report over the API: JSON, or CSV with ?format=csv (staff only, token or session auth)."""

from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics import reports


class ReportCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> str:
        if isinstance(data, dict) and "month" in data and "by_provider" in data:
            return reports.report_csv(data)
        # DRF's own errors (401/403) reach here when ?format=csv was asked for: keep them readable.
        return "error\n" + str(data.get("detail", data) if isinstance(data, dict) else data) + "\n"


class MonthlyReportView(APIView):
    permission_classes = [IsAdminUser]
    renderer_classes = [JSONRenderer, ReportCSVRenderer]

    @extend_schema(
        summary="Monthly savings report (UTC month YYYY-MM)",
        description="Runs, calls, local share against the target, tokens, cost, cloud-baseline cost and savings, "
        "by provider, model, agent and user, with latency and the change against the previous month. "
        "Money and percentages are decimal strings. A finished month is served from its stored snapshot.",
        parameters=[
            OpenApiParameter("month", OpenApiTypes.STR, OpenApiParameter.PATH, description="Like 2026-03."),
        ],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The report (JSON, or CSV with ?format=csv)."),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description='{"error": "..."} for a malformed month.'),
        },
    )
    def get(self, request: Request, month: str) -> Response | JsonResponse:
        try:
            data = reports.report_get(month=month)
        except ValueError as error:
            # A plain JsonResponse, so a bad month is JSON even when CSV was asked for.
            return JsonResponse({"error": str(error)}, status=400)
        response = Response(data)
        if request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = f'attachment; filename="switchyard-savings-{data["month"]}.csv"'
        return response
