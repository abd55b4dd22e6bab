"""The savings report over the API (staff only, token or session auth): JSON at
/api/v1/reports/monthly/YYYY-MM/, CSV at /api/v1/reports/monthly/YYYY-MM.csv (or the JSON's URL
with ?format=csv). Errors are JSON whatever was asked for."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.months import month_parse
from metrics.forms import SourceTeamKeyForm
from metrics.reports.formats import report_csv, report_filename, report_json
from metrics.reports.services import report_get_or_store
from metrics.reports.types import Report, ReportFilters
from metrics.selectors import Reading, filter_choices
from metrics.serializers import MONTH_PATTERN, ReportOutput
from routing.sources import Source


class ReportCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Report, accepted_media_type=None, renderer_context=None) -> str:
        # Only a report: errors are JSON whatever the format asked for (project/api_errors.py).
        return report_csv(data)


MONTH = OpenApiParameter(
    "month", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=MONTH_PATTERN, description="A UTC month, like 2026-03."
)
FILTERS = [
    OpenApiParameter(
        "source",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        enum=list(Source.values),
        description="Only the calls of agent runs (and provider checks), or only those through the gateway.",
    ),
    OpenApiParameter(
        "team", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Only the calls of this team (its id)."
    ),
    OpenApiParameter(
        "key", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Only the calls made with this API key (its id)."
    ),
]
DESCRIPTION = (
    "Runs, calls, local share against the target, tokens, cost, cloud-baseline cost and savings, "
    "by provider, model, agent, user, source (agents / gateway), team and API key, with latency and "
    "the change against the previous month. "
    "Money (10 places) and percentages are decimal strings, timestamps ISO 8601 UTC. "
    "A finished month is served from its stored snapshot; filtered (source, team, key: a team or key "
    "that made calls), it is built from the ledger as it stands and never stored."
)


class _ReportView(APIView):
    permission_classes = [IsAdminUser]
    metadata_class = None  # OPTIONS answers 405: the CSV renderer writes reports, not descriptions of views

    def handle_exception(self, exc: Exception) -> Response:
        # An error is JSON even when CSV was asked for: the CSV renderer only writes reports.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response

    def report(self, month: str) -> Report:
        try:
            month_parse(month)
        except ValueError as error:
            raise ValidationError({"month": [str(error)]}) from None
        # The same validation as the report page: a value the ledger does not have says which field.
        empty = [name for name in ("source", "team", "key") if self.request.query_params.get(name) == ""]
        if empty:  # the schema declares a value: leave the parameter out for all calls
            raise ValidationError({name: ["Leave it out for all calls, or give a value."] for name in empty})
        reading = Reading.take()  # one for the choices and the report
        form = SourceTeamKeyForm(self.request.query_params, choices=filter_choices(reading=reading))
        if not form.is_valid():
            raise ValidationError({name: [str(message) for message in errors] for name, errors in form.errors.items()})
        return report_get_or_store(month=month, filters=ReportFilters(**form.source_team_key()), reading=reading)

    def csv_response(self, report: Report) -> Response:
        # The CSV renderer writes the typed report itself: no detour through the JSON's strings.
        response = Response(report)
        response["Content-Disposition"] = f'attachment; filename="{report_filename(report)}.csv"'
        return response


class MonthlyReportView(_ReportView):
    renderer_classes = [JSONRenderer, ReportCSVRenderer]

    @extend_schema(
        summary="Monthly savings report (UTC month YYYY-MM)",
        description=DESCRIPTION,
        parameters=[MONTH, *FILTERS],
        responses={
            (200, "application/json"): ReportOutput,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="With ?format=csv."),
        },
    )
    def get(self, request: Request, month: str) -> Response:
        if request.query_params.get("format") == "":
            raise ValidationError({"format": ["Leave it out for JSON, or give json or csv."]})
        report = self.report(month)
        if request.accepted_renderer.format == "csv":
            return self.csv_response(report)
        return Response(report_json(report))


class MonthlyReportCSVView(_ReportView):
    renderer_classes = [ReportCSVRenderer]

    @extend_schema(
        operation_id="v1_reports_monthly_csv_retrieve",
        summary="Monthly savings report as CSV",
        description="The same report, one table: the month, the previous month, then a row per provider, "
        "model, agent, user, source, team and API key.",
        parameters=[MONTH, *FILTERS],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request, month: str) -> Response:
        return self.csv_response(self.report(month))
