"""Model aliases (`auto`, `code`, ...): in the routing files, the admin and the cached routing table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from routing.models import ModelAlias, Provider
from routing.table import AliasInfo, current_table, invalidate_routing_cache
from tests.factories import provider_create
from tests.routing.configs import LOCAL, ROUTING, load, snapshot, wipe, write_configs

pytestmark = pytest.mark.django_db

ALIASES = """\
aliases:
  - name: code
    capability: code_generation
    description: Writing code.
  - name: auto
"""


@pytest.fixture(autouse=True)
def _no_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


def aliases() -> list[tuple[str, str, bool]]:
    return list(ModelAlias.objects.order_by("name").values_list("name", "capability", "enabled"))


def table_aliases() -> dict[str, AliasInfo]:
    invalidate_routing_cache()
    return current_table().aliases


# --- the routing files -----------------------------------------------------------------------


def test_the_shipped_files_give_auto_and_one_alias_per_agent_capability():
    load()

    assert aliases() == [
        ("auto", "", True),
        ("code", "code_generation", True),
        ("devops", "devops", True),
        ("docs", "documentation", True),
        ("tests", "testing", True),
    ]


def test_aliases_load_from_the_files_and_a_second_load_changes_nothing(tmp_path: Path):
    paths = write_configs(tmp_path, routing=ROUTING + ALIASES)
    out, _ = load(*paths)
    before = snapshot()
    again, _ = load(*paths)

    assert "created alias code (code_generation)" in out
    assert aliases() == [("auto", "", True), ("code", "code_generation", True)]
    assert snapshot() == before
    assert "alias" not in again


def test_an_alias_left_out_of_the_files_is_deleted_and_an_edited_one_updated(tmp_path: Path):
    load(*write_configs(tmp_path, routing=ROUTING + ALIASES))
    edited = ROUTING + "aliases:\n  - name: code\n    capability: testing\n    enabled: false\n"
    out, _ = load(*write_configs(tmp_path, routing=edited))

    assert "deleted alias auto (not in the files)" in out
    assert "updated alias code: capability 'code_generation' -> 'testing'" in out
    assert aliases() == [("code", "testing", False)]


def test_an_alias_named_like_a_model_is_refused_at_its_line(tmp_path: Path):
    clashing = ROUTING + "aliases:\n  - name: code\n  - name: sonnet\n"

    with pytest.raises(CommandError) as refused:
        load(*write_configs(tmp_path, routing=clashing))

    message = str(refused.value)
    where = "llm_routing.yaml:29: aliases[1].name"
    assert f"{where}: 'sonnet' is the name of both an alias and a model (claude/sonnet)" in message
    assert "Rename the alias" in message
    assert not ModelAlias.objects.exists()  # nothing written


def test_an_alias_listed_twice_is_refused(tmp_path: Path):
    twice = ROUTING + "aliases:\n  - name: code\n  - name: code\n"

    with pytest.raises(CommandError, match=r"yaml:29: aliases\[1\]\.name: an alias named 'code' is listed twice"):
        load(*write_configs(tmp_path, routing=twice))


def test_an_alias_with_a_capability_that_is_no_capability_name_is_refused(tmp_path: Path):
    bad = ROUTING + "aliases:\n  - name: code\n    capability: Code Gen\n"

    with pytest.raises(CommandError, match=r"yaml:29: aliases\[0\]\.capability: A capability is a lowercase"):
        load(*write_configs(tmp_path, routing=bad))


def test_aliases_survive_an_export_and_a_reload(tmp_path: Path):
    load(*write_configs(tmp_path, routing=ROUTING + ALIASES))
    ModelAlias.objects.create(name="quiet", capability="testing", enabled=False)
    before = snapshot()
    call_command("export_routing", "--output-dir", str(tmp_path / "export"))
    exported = yaml.safe_load((tmp_path / "export" / "llm_routing.yaml").read_text())
    wipe()
    load(tmp_path / "export" / "llm_routing.yaml", tmp_path / "export" / "local_provider.yaml")

    assert exported["aliases"] == [
        {"name": "auto"},
        {"name": "code", "capability": "code_generation", "description": "Writing code."},
        {"name": "quiet", "capability": "testing", "enabled": False},
    ]
    assert snapshot() == before


# --- the cached routing table ----------------------------------------------------------------


def test_auto_is_built_in_when_no_alias_row_names_it():
    ModelAlias.objects.create(name="code", capability="code_generation")

    assert [(a.name, a.capability) for a in table_aliases().values()] == [("auto", ""), ("code", "code_generation")]


def test_a_disabled_alias_is_not_in_the_table_and_a_disabled_auto_row_removes_auto():
    ModelAlias.objects.create(name="auto", enabled=False)
    ModelAlias.objects.create(name="tests", capability="testing", enabled=False)
    ModelAlias.objects.create(name="docs", capability="documentation")

    assert list(table_aliases()) == ["docs"]


# --- the admin -------------------------------------------------------------------------------


@pytest.fixture
def post(client: Client, staff_user, django_capture_on_commit_callbacks) -> Callable:
    client.force_login(staff_user)

    def _post(url: str, data: dict):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data)

    return _post


def test_an_operator_adds_an_alias_in_the_admin_and_the_router_sees_it_at_once(post: Callable):
    current_table()  # cached before the change
    response = post(
        "/admin/routing/modelalias/add/",
        {"name": "tests", "capability": "testing", "description": "Unit tests", "enabled": "on"},
    )

    assert response.status_code == 302
    assert current_table().aliases["tests"] == AliasInfo("tests", "testing", "Unit tests")


def test_an_operator_edits_an_alias_in_the_admin(post: Callable):
    alias = ModelAlias.objects.create(name="code", capability="code_generation")
    response = post(f"/admin/routing/modelalias/{alias.pk}/change/", {"name": "code", "capability": "testing"})

    assert response.status_code == 302
    assert aliases() == [("code", "testing", False)]
    assert "code" not in current_table().aliases


def test_the_admin_refuses_an_alias_named_like_a_model_and_says_why(post: Callable):
    provider_create("ollama", kind="ollama", base_url="http://127.0.0.1:9", model="mistral:latest")
    response = post("/admin/routing/modelalias/add/", {"name": "mistral:latest", "enabled": "on"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["name"]
    assert errors == [
        "'mistral:latest' is the name of both an alias and a model (ollama/mistral:latest): an alias may not have "
        "a concrete model's name, or a request naming it could not say which it means. Rename the alias (or the model)."
    ]
    assert not ModelAlias.objects.exists()


def test_the_admin_refuses_a_model_named_like_an_alias(post: Callable):
    provider = provider_create("ollama", kind="ollama", base_url="http://127.0.0.1:9", model="mistral:latest")
    ModelAlias.objects.create(name="code", capability="code_generation")
    response = post(
        "/admin/routing/llmmodel/add/",
        {"provider": provider.pk, "name": "code", "context_window": 4096, "system_prompt": "on"},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["name"]
    assert errors[0].startswith("'code' is the name of both an alias and a model (ollama/code):")
    assert not Provider.objects.get(name="ollama").models.filter(name="code").exists()


def test_the_loaded_files_use_the_local_section_unchanged(tmp_path: Path):
    # The aliases section sits beside the others: a provider file without it still loads.
    load(*write_configs(tmp_path, routing=ROUTING, local=LOCAL))

    assert not ModelAlias.objects.exists()
    assert list(table_aliases()) == ["auto"]
