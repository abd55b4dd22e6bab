from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from project import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("", include("agents.urls")),
    path("api/v1/", include("agents.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: the Content-Security-Policy allows no inline script.
    # GET only: its one renderer is an HTML template, so an OPTIONS answer (DRF's metadata) was a 500.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html", http_method_names=["get", "head"]
        ),
        name="api-docs",
    ),
    path("metrics/", include("metrics.urls")),
    path("providers/", include("routing.urls")),
    path("api/v1/reports/", include("metrics.api_urls")),
    path("v1/", include("gateway.urls")),  # the OpenAI-compatible gateway
    path("api/", include("gateway.ollama_urls")),  # the Ollama-compatible gateway (/api/chat, ...; no slash)
]

# Under /api/ these answer the API's JSON error shape; elsewhere Django's own pages.
handler400 = "project.api_errors.bad_request"
handler403 = "project.api_errors.permission_denied"
handler404 = "project.api_errors.page_not_found"
handler500 = "project.api_errors.server_error"
