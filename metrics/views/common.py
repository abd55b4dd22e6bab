"""Pieces every metrics page uses: the tabs, a figure card, a chart's JSON."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from core.formatting import Kind, shown
from metrics.figures import local_share_on_target

MAX_CHART_BARS = 15  # a breakdown chart shows the biggest entries; its table shows them all

PAGES = (
    ("cost", "Cost & savings"),
    ("usage", "Calls & tokens"),
    ("latency", "Latency & errors"),
    ("local_share", "Local share"),
)


def staff_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff only, in the app's own terms: anonymous visitors go to the app's login page, and a
    logged-in person who is not staff is told what they lack (403), not sent to the admin login."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            return render(request, "metrics/staff_only.html", status=403)
        return view(request, *args, **kwargs)

    return checked


def tabs() -> list[tuple[str, str, str]]:
    return [(slug, title, reverse(f"metrics:{slug}")) for slug, title in PAGES]


def card(label: str, kind: Kind, value: Any, note: str = "", state: str = "") -> dict[str, str]:
    return {"label": label, "value": shown(kind, value), "note": note, "state": state}


def chart(
    slug: str, title: str, *, unit: str, labels: list[str], datasets: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    """The JSON that static/metrics/charts.js draws. Numbers become floats here: they are only drawn."""
    for dataset in datasets:
        dataset["data"] = [None if v is None else float(v) for v in dataset["data"]]
    return {"id": f"chart-{slug}", "title": title, "unit": unit, "labels": labels, "datasets": datasets, **options}


def share_verdict(share: Any, target: Any) -> tuple[str, str]:
    """(note, css state) for a local share against its target; no share (no successful call) is no verdict."""
    on_target = local_share_on_target(share=share, target=target)
    if on_target is None:
        return "no successful calls", ""
    return ("on target", "on-target") if on_target else ("below target", "below-target")
