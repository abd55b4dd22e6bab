"""The REST API for scripts, at /api/v1/. Token auth: `Authorization: Token <key>`
(get one with `python manage.py drf_create_token USERNAME`).

One view per resource operation; input serializers check shape, `agents.services` does the work.
Users see and cancel their own runs; staff see all; someone else's run answers 404, not 403,
so ids do not leak. Views let services' refusals through: project/api_errors.py turns every error
into the one JSON error shape.

Lists page by cursor (stable while runs are added) and refuse query parameters they do not know.
POSTs that create take an `Idempotency-Key` header (agents.idempotency): a retry answers with
what the first try created.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey
from agents import idempotency, selectors, services
from agents.idempotency import Created
from agents.models import Agent, AgentRun, Workflow
from agents.serializers import (
    LIST_ORDERINGS,
    MAX_PAGE_SIZE,
    AgentOutput,
    ListFilterInput,
    RunCreateInput,
    RunFilterInput,
    RunOutput,
    RunSummaryOutput,
    WorkflowCreateInput,
    WorkflowOutput,
    WorkflowSummaryOutput,
)
from core.errors import Conflict
from core.fields import path_id

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Query parameters every list takes besides its filters: the cursor its links carry, and DRF's
# own ?format=.
PAGING_PARAMS = frozenset({"cursor", "format"})


class ListPagination(CursorPagination):
    """Pages that stay put while runs are added: a cursor marks where the last page ended, so a new
    run never pushes one onto the next page twice (as page numbers did)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def __init__(self, ordering: str = "-created_at") -> None:
        self.ordering = LIST_ORDERINGS[ordering]

    def get_ordering(self, request: Request, queryset: QuerySet, view: APIView | None) -> tuple[str, ...]:
        return self.ordering

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: APIView | None = None) -> list:
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, ValueError, TypeError, DjangoValidationError):
            # Not a cursor of ours, or one given out for another ordering.
            raise ValidationError({"cursor": ["Not a cursor this list gave out; start again without it."]}) from None


def _pk(value: str) -> int:
    if (pk := path_id(value)) is None:
        raise NotFound("Not found.")
    return pk


def _run_or_404(request: Request, pk: str) -> AgentRun:
    run = selectors.run_get(user=request.user, pk=_pk(pk))
    if run is None:
        raise NotFound("No run with that id.")
    return run


def _list_filters(request: Request, given: type[ListFilterInput]) -> dict:
    """The list's filters, checked; unknown parameters are refused rather than silently ignored
    (a misspelt filter would otherwise answer with everything)."""
    known = set(given().fields) | PAGING_PARAMS
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        hint = f"Unknown query parameter; known: {', '.join(sorted(known))}."
        raise ValidationError({name: [hint] for name in unknown})
    # A plain dict: an empty `?user=` is a blank user (400), not a field left out as in a form.
    filters = given(data=request.query_params.dict())
    filters.is_valid(raise_exception=True)
    # `user` narrows what the caller may see: for a plain user, another name finds nothing.
    return dict(filters.validated_data)


def _page(
    request: Request, view: APIView, items: QuerySet, *, ordering: str, output: type[serializers.Serializer]
) -> Response:
    paginator = ListPagination(ordering=ordering)
    page = paginator.paginate_queryset(items, request, view=view)
    return paginator.get_paginated_response(output(page, many=True, context={"request": request}).data)


def _api_key(request: Request) -> ApiKey | None:
    """The personal key the request came with (project.authentication); None for a session or an
    older DRF token."""
    return request.auth if isinstance(request.auth, ApiKey) else None


def _submit(request: Request, *, endpoint: str, submit: Callable[[], Created]) -> tuple[Created, bool]:
    """Call `submit`, once per Idempotency-Key when the request has one; True for a replay."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        try:
            idempotency.key_check(key)
        except DjangoValidationError as error:
            raise ValidationError({IDEMPOTENCY_HEADER: error.messages}) from None
    if key is None:
        return submit(), False
    try:
        return idempotency.submit_once(user=request.user, key=key, endpoint=endpoint, body=request.data, submit=submit)
    except idempotency.IdempotencyConflict as error:
        raise Conflict(str(error)) from None


def _created(body: dict, *, replayed: bool) -> Response:
    response = Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return response


class RunListCreate(APIView):
    pagination_class = ListPagination  # for the schema

    @extend_schema(
        parameters=[RunFilterInput],
        responses={200: RunSummaryOutput(many=True)},
        summary="Runs you may see (staff: all), newest first",
    )
    def get(self, request: Request) -> Response:
        data = _list_filters(request, RunFilterInput)
        runs = selectors.run_list(
            user=request.user,
            agent=data.get("agent"),
            status=data.get("status"),
            since=data.get("since"),
            user_filter=data.get("user"),
            workflow=data.get("workflow"),
        )
        return _page(request, self, runs, ordering=data["ordering"], output=RunSummaryOutput)

    @extend_schema(request=RunCreateInput, responses={201: RunOutput}, summary="Submit a run to one agent")
    def post(self, request: Request) -> Response:
        given = RunCreateInput(data=request.data)
        given.is_valid(raise_exception=True)
        run, replayed = _submit(
            request,
            endpoint="runs",
            submit=lambda: services.run_submit(user=request.user, api_key=_api_key(request), **given.validated_data),
        )
        # A run just created has no attempts yet: skip the ledger query.
        context = {"request": request} if replayed else {"request": request, "new": True}
        return _created(RunOutput(run, context=context).data, replayed=replayed)


class RunDetail(APIView):
    @extend_schema(responses={200: RunOutput}, summary="One run, with each attempt at a provider")
    def get(self, request: Request, pk: str) -> Response:
        return Response(RunOutput(_run_or_404(request, pk), context={"request": request}).data)


class RunCancel(APIView):
    @extend_schema(
        request=None,
        responses={
            200: RunOutput,
            409: OpenApiResponse(description="The run has already succeeded or failed (its status is in the error)."),
        },
        summary="Cancel a queued or running run (cancelling a cancelled run answers 200)",
    )
    def post(self, request: Request, pk: str) -> Response:
        run = _run_or_404(request, pk)
        try:
            run = services.run_cancel(run=run, user=request.user)
        except DjangoPermissionDenied:
            raise NotFound("No run with that id.") from None
        return Response(RunOutput(run, context={"request": request}).data)


class WorkflowListCreate(APIView):
    pagination_class = ListPagination  # for the schema

    @extend_schema(
        parameters=[ListFilterInput],
        responses={200: WorkflowSummaryOutput(many=True)},
        summary="Workflows you may see (staff: all), newest first",
    )
    def get(self, request: Request) -> Response:
        data = _list_filters(request, ListFilterInput)
        workflows = selectors.workflow_list(
            user=request.user, status=data.get("status"), since=data.get("since"), user_filter=data.get("user")
        )
        return _page(request, self, workflows, ordering=data["ordering"], output=WorkflowSummaryOutput)

    @extend_schema(
        request=WorkflowCreateInput,
        responses={201: WorkflowOutput},
        summary="Fan a feature out to several agents (all enabled agents by default)",
    )
    def post(self, request: Request) -> Response:
        given = WorkflowCreateInput(data=request.data)
        given.is_valid(raise_exception=True)
        workflow, replayed = _submit(
            request,
            endpoint="workflows",
            submit=lambda: services.workflow_submit(
                user=request.user, api_key=_api_key(request), **given.validated_data
            ),
        )
        return _created(WorkflowOutput(workflow, context={"request": request}).data, replayed=replayed)


class WorkflowDetail(APIView):
    @extend_schema(responses={200: WorkflowOutput}, summary="One workflow, its runs and totals")
    def get(self, request: Request, pk: str) -> Response:
        workflow: Workflow | None = selectors.workflow_get(user=request.user, pk=_pk(pk))
        if workflow is None:
            raise NotFound("No workflow with that id.")
        return Response(WorkflowOutput(workflow, context={"request": request}).data)


class WorkflowCancel(APIView):
    @extend_schema(
        request=None,
        responses={
            200: WorkflowOutput,
            409: OpenApiResponse(description="Every run finished by itself (the workflow's status is in the error)."),
        },
        summary="Cancel a workflow's queued and running runs (finished runs keep their results)",
    )
    def post(self, request: Request, pk: str) -> Response:
        workflow: Workflow | None = selectors.workflow_get(user=request.user, pk=_pk(pk))
        if workflow is None:
            raise NotFound("No workflow with that id.")
        try:
            workflow = services.workflow_cancel(workflow=workflow, user=request.user)
        except DjangoPermissionDenied:
            raise NotFound("No workflow with that id.") from None
        return Response(WorkflowOutput(workflow, context={"request": request}).data)


class AgentList(APIView):
    @extend_schema(responses={200: AgentOutput(many=True)}, summary="The agents")
    def get(self, request: Request) -> Response:
        return Response(AgentOutput(Agent.objects.all(), many=True).data)
