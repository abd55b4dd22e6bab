"""Your API keys over the REST API: list, create (the key in that answer only), revoke. Everyone,
staff too, sees only their own here; staff manage anyone's in the admin."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.serializers import KeyCreatedOutput, KeyCreateInput, KeyOutput
from core.fields import path_id


class KeyListCreate(APIView):
    @extend_schema(responses={200: KeyOutput(many=True)}, summary="Your API keys that are not revoked, newest first")
    def get(self, request: Request) -> Response:
        return Response(KeyOutput(selectors.key_list(user=request.user), many=True).data)

    @extend_schema(
        request=KeyCreateInput,
        responses={201: KeyCreatedOutput},
        summary="Create an API key (shown this once)",
        description="Not with a key limited to models, a budget, rate limits or an expiry (403): the new key "
        "would have none of its limits.",
    )
    def post(self, request: Request) -> Response:
        services.key_create_allowed_check(by=request.auth)
        given = KeyCreateInput(data=request.data)
        given.is_valid(raise_exception=True)
        created = services.key_create(user=request.user, **given.validated_data)
        body = {**KeyOutput(created.key).data, "key": created.secret}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class KeyRevoke(APIView):
    @extend_schema(responses={204: OpenApiResponse(description="Revoked.")}, summary="Revoke one of your API keys")
    def delete(self, request: Request, pk: str) -> Response:
        key_id = path_id(pk)
        key = None if key_id is None else selectors.key_get(user=request.user, pk=key_id)
        if key is None:
            raise NotFound("No such key.")
        services.key_revoke(key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)
