"""The "API keys" page: a user lists, creates (the key shown on that one response) and revokes
their own keys, and revokes the older token they may still have."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework.authtoken.models import Token

from accounts import selectors, services
from accounts.forms import KeyCreateForm


@never_cache  # a new key is on the page once: no cache keeps a copy
@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    new_key = None
    form = KeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            new_key = services.key_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                allowed_models=form.models(),
                requests_per_minute=form.cleaned_data["requests_per_minute"],
                tokens_per_minute=form.cleaned_data["tokens_per_minute"],
            )
        except ValidationError as refused:
            form.add_error(None, refused.messages)
        else:
            form = KeyCreateForm()
    context = {
        "form": form,
        "new_key": new_key,
        "keys": selectors.key_list(user=request.user),
        "token": Token.objects.filter(user=request.user).first(),
    }
    return render(request, "account/api_keys.html", context)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = selectors.key_get(user=request.user, pk=pk)
    if key is None:
        raise Http404("No such key.")
    services.key_revoke(key=key)
    messages.success(request, f"The key {key.prefix}… ({key.name}) is revoked: requests that send it are refused.")
    return redirect("api_keys")


@login_required
@require_POST
def api_token_revoke(request: HttpRequest) -> HttpResponse:
    if services.token_revoke(user=request.user):
        messages.success(request, "Your older API token is revoked: requests that send it are refused.")
    return redirect("api_keys")
