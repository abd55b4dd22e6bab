"""Staff pages for the metrics, included at /metrics/ by project/urls.py."""

from django.urls import path, re_path

from metrics import views

app_name = "metrics"

urlpatterns = [
    path("", views.cost, name="cost"),
    path("usage/", views.usage, name="usage"),
    path("latency/", views.latency, name="latency"),
    path("local-share/", views.local_share, name="local_share"),
    path("reports/", views.report_latest, name="report_latest"),
    re_path(r"^reports/(?P<month>\d{4}-\d{2})/$", views.report, name="report"),
]
