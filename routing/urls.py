"""The provider pages, included at /providers/ by project/urls.py."""

from django.urls import path

from routing import views

app_name = "routing"

urlpatterns = [
    path("<slug:name>/test/", views.provider_test, name="provider_test"),
]
