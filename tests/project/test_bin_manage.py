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
