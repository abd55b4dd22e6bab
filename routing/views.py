"""The dashboard's "Test" button: one provider checked for real (routing.checks), staff only.

It makes a short real generation, which a cloud provider bills (and the ledger meters), so only
staff may press it. With script (static/routing/provider_test.js) the result comes back as a
fragment shown in place; without, a plain POST redirects to the dashboard with the result as a
message.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from routing.checks import provider_check
from routing.selectors import ProviderState
from routing.table import load_table


@login_required
@require_POST
def provider_test(request: HttpRequest, name: str) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can test a provider: the test is a real, billed call.")
    table = load_table(None)  # the providers as they are now, not this process's cached copy
    provider = table.by_name.get(name)
    if provider is None:
        raise Http404("No such provider.")
    check = provider_check(table, provider, user_id=request.user.pk)
    if request.headers.get("X-Requested-With") == "fetch":
        return render(request, "routing/_provider_test.html", {"check": check, "name": name})
    notify = messages.success if check.status == ProviderState.UP else messages.error
    notify(request, check.summary)
    return redirect(reverse("home") + "#providers")
