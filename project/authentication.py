"""API key authentication for the REST API: `Authorization: Bearer <key>` (the header a client
generated from the OpenAPI schema sends) or `Token <key>` (DRF's word, which older scripts send).
The key is a personal API key (accounts), or an older DRF token until it is revoked."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.services import KeyRefused, key_authenticate

KEYWORDS = (b"bearer", b"token")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request):
        words = authentication.get_authorization_header(request).split()
        if not words or words[0].lower() not in KEYWORDS:
            return None  # not ours: the session may still authenticate the request
        if len(words) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: send `Bearer <key>`.")
        try:
            holder = key_authenticate(words[1].decode())
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        except KeyRefused as refused:
            raise exceptions.AuthenticationFailed(str(refused)) from None
        return holder.user, holder.key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <key>` (or `Token <key>`); a key from your **API keys** "
            "page (`/account/keys/`), `POST /api/v1/keys/`, or `python manage.py api_key_create USERNAME`.",
        }
