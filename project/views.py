from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from agents.models import Agent
from routing.models import Provider, RoutingPolicy


@login_required
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "providers": Provider.objects.all(),
        "agents": Agent.objects.filter(enabled=True),
        "policy": RoutingPolicy.get(),
    }
    return render(request, "home.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and the CI smoke test: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
