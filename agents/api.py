"""The REST API for scripts, at /api/v1/. Token auth: `Authorization: Token <key>`
(get one with `python manage.py drf_create_token USERNAME`).

One view per resource operation; input serializers check shape, `agents.services` does the work.
Users see and cancel their own runs; staff see all; someone else's run answers 404, not 403,
so ids do not leak. Views let services' refusals through: project/api_errors.py turns every error
into the one JSON error shape.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors, services
from agents.models import Agent, AgentRun, Workflow
from agents.serializers import (
    AgentOutput,
    RunCreateInput,
    RunFilterInput,
    RunOutput,
    RunSummaryOutput,
    WorkflowCreateInput,
    WorkflowOutput,
)

MAX_ID = 2**63 - 1  # larger ids would overflow PostgreSQL's bigint: a 404, not a 500


class RunPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _pk(value: str) -> int:
    # ASCII digits only: str.isdigit() also takes "²" (int() then fails) and Arabic-Indic digits
    # (int() reads them, so they named real runs).
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_ID:
        raise NotFound("Not found.")
    return int(value)


def _run_or_404(request: Request, pk: str) -> AgentRun:
    run = selectors.run_get(user=request.user, pk=_pk(pk))
    if run is None:
        raise NotFound("No run with that id.")
    return run


class RunListCreate(APIView):
    pagination_class = RunPagination  # for the schema

    @extend_schema(
        parameters=[RunFilterInput],
        responses={200: RunSummaryOutput(many=True)},
        summary="Runs you may see (staff: all), newest first",
    )
    def get(self, request: Request) -> Response:
        filters = RunFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        if data.get("user") and not request.user.is_staff:
            raise ValidationError({"user": ["Only staff can filter by user."]})
        runs = selectors.run_list(
            user=request.user,
            agent=data.get("agent"),
            status=data.get("status"),
            since=data.get("since"),
            user_filter=data.get("user"),
        )
        paginator = RunPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        body = RunSummaryOutput(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(body)

    @extend_schema(request=RunCreateInput, responses={201: RunOutput}, summary="Submit a run to one agent")
    def post(self, request: Request) -> Response:
        given = RunCreateInput(data=request.data)
        given.is_valid(raise_exception=True)
        run = services.run_submit(user=request.user, **given.validated_data)
        # A run just created has no attempts yet: skip the ledger query.
        body = RunOutput(run, context={"request": request, "new": True}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


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


class WorkflowCreate(APIView):
    @extend_schema(
        request=WorkflowCreateInput,
        responses={201: WorkflowOutput},
        summary="Fan a feature out to several agents (all enabled agents by default)",
    )
    def post(self, request: Request) -> Response:
        given = WorkflowCreateInput(data=request.data)
        given.is_valid(raise_exception=True)
        workflow = services.workflow_submit(user=request.user, **given.validated_data)
        body = WorkflowOutput(workflow, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


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
