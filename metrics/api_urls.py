from django.urls import path

from metrics import api

# Any text as the month, so a malformed one gets a 400 that says why rather than a bare 404.
urlpatterns = [
    path("monthly/<str:month>.csv", api.MonthlyReportCSVView.as_view(), name="api-monthly-report-csv"),
    path("monthly/<str:month>/", api.MonthlyReportView.as_view(), name="api-monthly-report"),
]
