"""The app's navigation, on the app's pages and in the admin, which looks like part of the app."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from tests.factories import user_create

pytestmark = pytest.mark.django_db
APP_LINKS = ("/", "/runs/", "/runs/new/", "/workflows/new/")
STAFF_LINKS = ("/metrics/", "/metrics/reports/", "/admin/")


def nav_of(page: str) -> str:
    """The header's navigation: the app's topbar, or the admin's header."""
    match = re.search(r'<header class="topbar">.*?</header>', page, re.S) or re.search(
        r'<header id="header">.*?</header>', page, re.S
    )
    assert match, page
    return match.group(0)


@pytest.fixture
def staff(client):
    user = user_create("olivia", staff=True)
    user.is_superuser = True
    user.save()
    client.force_login(user)
    return user


def test_staff_reach_the_metrics_history_and_the_savings_report_from_the_apps_navigation(client, staff):
    nav = nav_of(client.get(reverse("home")).content.decode())

    assert all(f'href="{url}"' in nav for url in APP_LINKS + STAFF_LINKS), nav
    assert ">Metrics</a>" in nav and ">Savings report</a>" in nav


def test_people_who_are_not_staff_get_no_metrics_or_admin_links(client):
    client.force_login(user_create("ana"))

    nav = nav_of(client.get(reverse("home")).content.decode())

    assert all(f'href="{url}"' in nav for url in APP_LINKS)
    assert not any(f'href="{url}"' in nav for url in STAFF_LINKS)


@pytest.mark.parametrize("url", ["/admin/", "/admin/agents/agentrun/", "/admin/routing/provider/"])
def test_the_admin_has_the_apps_header_with_a_way_back_to_the_dashboard(client, staff, url):
    page = client.get(url).content.decode()
    header = nav_of(page)

    assert '<a href="/" title="Back to the dashboard">Switchyard</a>' in header
    assert all(f'href="{link}"' in header for link in APP_LINKS + STAFF_LINKS), header
    assert "/static/css/admin.css" in page
    assert "Django administration" not in page


def test_the_admin_login_page_is_branded_too(client):
    page = client.get("/admin/login/").content.decode()

    assert '<a href="/" title="Back to the dashboard">Switchyard</a>' in page
    assert "Django administration" not in page
    assert 'class="app-nav"' not in page  # nothing to navigate to before logging in


def test_the_admin_colours_are_the_apps(client):
    app = open(finders.find("css/switchyard.css")).read()
    admin = open(finders.find("css/admin.css")).read()
    topbar = re.search(r"\.topbar \{[^}]*background: (#[0-9a-f]{6})", app).group(1)
    accent = re.search(r"--accent: (#[0-9a-f]{6})", app).group(1)

    assert f"--header-bg: {topbar};" in admin
    assert f"--primary: {accent};" in admin and f"--link-fg: {accent};" in admin and f"--button-bg: {accent};" in admin
