"""The savings report over the API: JSON, or CSV with ?format=csv (staff only, token or session auth)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.reports.formats import report_csv, report_json
from metrics.reports.services import report_get_or_store
from metrics.reports.types import Report


class ReportCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Report, accepted_media_type=None, renderer_context=None) -> str:
        # Only a report: errors are JSON whatever the format asked for (project/api_errors.py).
        return report_csv(data)


class MonthlyReportView(APIView):
    permission_classes = [IsAdminUser]
    renderer_classes = [JSONRenderer, ReportCSVRenderer]

    @extend_schema(
        summary="Monthly savings report (UTC month YYYY-MM)",
        description="Runs, calls, local share against the target, tokens, cost, cloud-baseline cost and savings, "
        "by provider, model, agent and user, with latency and the change against the previous month. "
        "Money (10 places) and percentages are decimal strings, timestamps ISO 8601 UTC. "
        "A finished month is served from its stored snapshot.",
        parameters=[
            OpenApiParameter("month", OpenApiTypes.STR, OpenApiParameter.PATH, description="Like 2026-03."),
        ],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The report (JSON, or CSV with ?format=csv)."),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="A malformed month: a validation_error."),
        },
    )
    def get(self, request: Request, month: str) -> Response:
        try:
            report = report_get_or_store(month=month)
        except ValueError as error:
            raise ValidationError({"month": [str(error)]}) from None
        if request.accepted_renderer.format == "csv":
            # The CSV renderer writes the typed report itself: no detour through the JSON's strings.
            response = Response(report)
            response["Content-Disposition"] = f'attachment; filename="switchyard-savings-{report.month:%Y-%m}.csv"'
            return response
        return Response(report_json(report))
