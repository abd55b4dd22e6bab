"""bin/manage: management commands with the project's venv, from any directory, no venv activated."""

import os
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tests.agents.worker import database_url

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)  # the command's own process must see the user
def test_it_creates_an_api_token_from_another_directory_without_an_active_venv(tmp_path):
    get_user_model().objects.create_user("ana")
    env = {
        "PATH": "/usr/bin:/bin",  # no .venv/bin: as in a fresh terminal
        "HOME": str(tmp_path),
        "DATABASE_URL": database_url(),
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
    }

    result = subprocess.run(
        [BASE_DIR / "bin" / "manage", "drf_create_token", "ana"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    key = Token.objects.get(user__username="ana").key
    assert result.stdout.strip() == f"Generated token {key} for user ana"


def test_it_is_executable():
    assert os.access(BASE_DIR / "bin" / "manage", os.X_OK)


def _manage(tmp_path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SWITCHYARD_VAR_DIR": str(tmp_path / "var"), **extra}
    return subprocess.run(
        [BASE_DIR / "bin" / "manage", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_it_reads_the_keys_in_dot_env_as_the_fix_sentences_say_with_the_environment_winning(tmp_path):
    # "ANTHROPIC_API_KEY is not set: put it in .env or the environment of the worker": bin/run and
    # bin/manage read .env (SWITCHYARD_ENV_FILE points them at this one instead of the project's).
    dot_env = tmp_path / "dot-env"
    dot_env.write_text(
        "# keys for the providers\n"
        "ANTHROPIC_API_KEY=sk-ant-from-dot-env\n"
        'OPENAI_API_KEY="sk-openai-from-dot-env"\n'
        "SWITCHYARD_REPORT_RECIPIENTS=from-dot-env@example.com\n"
    )
    names = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "SWITCHYARD_REPORT_RECIPIENTS")
    show = f"import os; print(*(os.environ[name] for name in {names!r}))"

    result = _manage(
        tmp_path,
        "shell",
        "-v",
        "0",
        "-c",
        show,
        SWITCHYARD_ENV_FILE=str(dot_env),
        SWITCHYARD_REPORT_RECIPIENTS="from-environment@example.com",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sk-ant-from-dot-env", "sk-openai-from-dot-env", "from-environment@example.com"]


def test_it_allows_the_demo_model_where_bin_local_model_serves_it(tmp_path):
    # bin/run --local-model serves the demo model on loopback and allows it for its web server and
    # worker; `bin/manage check_providers` refused it ("a loopback address ... unless listed").
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "local-model-host").write_text("127.0.0.1:8181\n")
    show = "from routing.rules import provider_endpoint_refusal as r; print(repr(r('http://127.0.0.1:8181')))"

    result = _manage(tmp_path, "shell", "-v", "0", "-c", show, SWITCHYARD_ENV_FILE=str(tmp_path / "none"))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "''"


def test_it_still_refuses_other_loopback_ports(tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "local-model-host").write_text("127.0.0.1:8181\n")
    show = "from routing.rules import provider_endpoint_refusal as r; print(r('http://127.0.0.1:6379'))"

    result = _manage(tmp_path, "shell", "-v", "0", "-c", show, SWITCHYARD_ENV_FILE=str(tmp_path / "none"))

    assert "loopback" in result.stdout, result.stdout + result.stderr
