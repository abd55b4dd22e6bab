"""API token authentication: `Authorization: Token <key>` (DRF's own word) or `Bearer <key>`, the
header a client generated from the OpenAPI schema sends, since the schema declares HTTP bearer."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication
from rest_framework.request import Request


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate(self, request: Request):
        # DRF makes one authenticator per request, so the word it expects can follow the header.
        if authentication.get_authorization_header(request).split(b" ", 1)[0].lower() == b"bearer":
            self.keyword = "Bearer"
        return super().authenticate(request)


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = TokenAuthentication
    name = "tokenAuth"
    priority = 1  # over drf-spectacular's own extension for DRF's class, which declares only "Token"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <key>` (or `Token <key>`); a key from "
            "`python manage.py drf_create_token USERNAME`.",
        }
