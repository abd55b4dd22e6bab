"""Staff pages for the metrics, included at /metrics/ by project/urls.py."""

from django.urls import path, re_path

from metrics.views import history, report

app_name = "metrics"

urlpatterns = [
    path("", history.cost, name="cost"),
    path("usage/", history.usage, name="usage"),
    path("latency/", history.latency, name="latency"),
    path("local-share/", history.local_share, name="local_share"),
    path("reports/", report.report_latest, name="report_latest"),
    re_path(r"^reports/(?P<month>[0-9]{4}-[0-9]{2})/$", report.report, name="report"),
]
