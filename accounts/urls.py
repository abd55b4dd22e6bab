from django.urls import path
from django.views.generic import RedirectView

from accounts import views

urlpatterns = [
    path("keys/", views.api_keys, name="api_keys"),
    path("keys/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("token/revoke/", views.api_token_revoke, name="api_token_revoke"),
    path("token/", RedirectView.as_view(pattern_name="api_keys"), name="api_token"),  # the page's old address
]
