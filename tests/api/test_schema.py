"""The OpenAPI schema at /api/schema/ says what a client generator needs (issue 10 item 18): a valid
document, JSON-only bodies, integer ids, the month's pattern, enums, typed nested objects, the CSV
as text/csv, one error shape on every operation's errors, and the bearer scheme the API accepts."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.api.conftest import require

ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(db) -> dict:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        section, kind, name = node["$ref"].removeprefix("#/").split("/")
        node = schema[section][kind][name]
    return node


def test_it_is_a_valid_openapi_document(schema):
    require("openapi_spec_validator")
    from openapi_spec_validator import validate

    validate(schema)


def test_every_request_body_is_json_only(schema):
    bodies = {
        (path, method): list(op["requestBody"]["content"])
        for path, method, op in operations(schema)
        if "requestBody" in op
    }
    assert bodies and set(map(tuple, bodies.values())) == {("application/json",)}, bodies


def test_every_request_body_is_a_closed_object(schema):
    # The API refuses a field it does not know; a generator or fuzzer must not think it may send one.
    bodies = [
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for item in schema["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
    ]
    assert {"RunCreateInputRequest", "WorkflowCreateInputRequest", "KeyCreateInputRequest"} <= set(bodies)
    for name in bodies:
        assert schema["components"]["schemas"][name]["additionalProperties"] is False


def test_ids_are_integers_and_the_month_has_its_pattern(schema):
    parameters = {
        (path, parameter["name"]): resolve(schema, parameter["schema"])
        for path, _, op in operations(schema)
        for parameter in op.get("parameters", [])
        if parameter["in"] == "path"
    }
    ids = [spec for (_, name), spec in parameters.items() if name == "id"]
    months = [spec for (_, name), spec in parameters.items() if name == "month"]
    assert len(ids) >= 4 and all(spec["type"] == "integer" and spec["minimum"] == 1 for spec in ids)
    assert months and all(spec["pattern"] == r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$" for spec in months)


def test_every_error_an_operation_can_answer_has_the_error_shape(schema):
    for path, method, op in operations(schema):
        responses = op["responses"]
        assert {"401", "403", "404", "406", "429", "500"} <= set(responses), (path, method)
        if "requestBody" in op:
            assert {"400", "413", "415"} <= set(responses), (path, method)
        for status, response in responses.items():
            if status[0] in "45":
                assert resolve(schema, response)["content"] == {"application/json": {"schema": ERROR}}, (path, status)
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert detail["required"] == ["code", "message"]
    assert "validation_error" in resolve(schema, detail["properties"]["code"])["enum"]


def test_nested_objects_are_typed_and_user_is_nullable(schema):
    components = schema["components"]["schemas"]
    assert components["WorkflowOutput"]["properties"]["runs"]["items"] == {
        "$ref": "#/components/schemas/RunSummaryOutput"
    }
    for name in ("RunSummaryOutput", "RunOutput", "WorkflowOutput"):
        assert components[name]["properties"]["user"]["nullable"] is True
    report = components["ReportOutput"]["properties"]
    assert report["by_provider"]["items"] == {"$ref": "#/components/schemas/ReportRowOutput"}
    assert report["local_share"]["nullable"] is True and report["cost_usd"]["format"] == "decimal"
    assert report["calls"]["type"] == "integer"
    provider = components["ProviderOutput"]["properties"]
    assert {"$ref"} == set(provider["kind"]) == set(provider["where"])
    assert resolve(schema, provider["where"])["enum"] == ["local", "cloud"]


def test_the_report_is_json_and_its_csv_is_text_csv(schema):
    by_id = {op["operationId"]: op for _, _, op in operations(schema)}
    report = by_id["v1_reports_monthly_retrieve"]["responses"]["200"]["content"]
    assert report["application/json"]["schema"] == {"$ref": "#/components/schemas/ReportOutput"}
    csv = by_id["v1_reports_monthly_csv_retrieve"]["responses"]["200"]["content"]
    assert csv == {"text/csv": {"schema": {"type": "string"}}}


def test_the_declared_bearer_scheme_is_what_the_api_accepts(schema, user):
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["tokenAuth"]["description"],
    }
    key = Token.objects.create(user=user).key
    for word in ("Bearer", "Token"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{word} {key}")
        assert client.get("/api/v1/runs/").status_code == 200, word
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-key")
    assert client.get("/api/v1/runs/").status_code == 401


def test_a_create_refuses_a_form_body_with_415(user):
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/runs/", {"agent": "marcus", "prompt": "x", "max_tokens": ""}, format="multipart")
    assert response.status_code == 415
    assert response["Content-Type"] == "application/json"


@pytest.fixture
def staff_client(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("olivia", password="x"))
    return client


def test_the_csv_report_answers_text_csv_and_its_errors_in_json(staff_client, user):
    response = staff_client.get("/api/v1/reports/monthly/2026-03.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.content.decode().startswith("section,key,label,")

    assert staff_client.get("/api/v1/reports/monthly/2026-13.csv")["Content-Type"] == "application/json"
    member = APIClient()
    member.force_authenticate(user)
    for url in ("/api/v1/reports/monthly/2026-03.csv", "/api/v1/reports/monthly/2026-03/?format=csv"):
        refused = member.get(url)
        assert (refused.status_code, refused["Content-Type"]) == (403, "application/json"), url


def test_options_on_the_report_is_a_405_not_a_server_error(staff_client):
    for url in ("/api/v1/reports/monthly/2026-03.csv", "/api/v1/reports/monthly/2026-03/?format=csv"):
        assert staff_client.options(url).status_code == 405, url
