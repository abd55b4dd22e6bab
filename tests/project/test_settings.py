"""Settings come from the environment; these run a fresh interpreter per case so nothing leaks."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "broker": settings.CELERY_BROKER_URL,
    "cache": settings.CACHES["default"]["BACKEND"],
    "secret": settings.SECRET_KEY,
    "debug": settings.DEBUG,
}))
"""


def _settings_with(tmp_path: Path, *, script: list[str] | None = None, **overrides: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "REDIS_", "CELERY_"))}
    for name in ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "CONTENT_SECURITY_POLICY"):
        env.pop(name, None)
    env = {key: value for key, value in env.items() if not key.startswith("SECURE_")}
    env.update({"DJANGO_SETTINGS_MODULE": "project.settings", "SWITCHYARD_VAR_DIR": str(tmp_path / "var")})
    env.update(overrides)
    return subprocess.run(
        [sys.executable, *(script or ["-c", PROBE])], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )


def _probe(tmp_path: Path, **overrides: str) -> dict:
    result = _settings_with(tmp_path, **overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_runs_on_sqlite_and_an_embedded_broker_with_no_environment(tmp_path):
    found = _probe(tmp_path)
    assert found["engine"] == "django.db.backends.sqlite3"
    assert found["db_name"].startswith(str(tmp_path / "var"))
    assert found["broker"] == "filesystem://"
    assert found["cache"].endswith("FileBasedCache")
    assert (tmp_path / "var" / "broker").is_dir()


def test_it_switches_to_postgresql_with_database_url(tmp_path):
    found = _probe(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/switchyard_x")
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["db_name"] == "switchyard_x"


def test_it_uses_redis_for_broker_and_cache_with_redis_url(tmp_path):
    found = _probe(tmp_path, REDIS_URL="redis://127.0.0.1:6379/3")
    assert found["broker"] == "redis://127.0.0.1:6379/3"
    assert found["cache"].endswith("RedisCache")


def test_a_broker_url_of_its_own_wins_over_redis_url(tmp_path):
    found = _probe(tmp_path, REDIS_URL="redis://127.0.0.1:6379/3", CELERY_BROKER_URL="redis://127.0.0.1:6379/9")
    assert found["broker"] == "redis://127.0.0.1:6379/9"


def test_debug_is_off_by_default(tmp_path):
    assert _probe(tmp_path)["debug"] is False


def test_without_a_secret_key_it_generates_one_and_keeps_it_under_the_var_dir(tmp_path):
    first, second = _probe(tmp_path), _probe(tmp_path)

    kept = tmp_path / "var" / "secret-key"
    assert first["secret"] == second["secret"] == kept.read_text().strip()
    assert len(first["secret"]) >= 50
    assert kept.stat().st_mode & 0o777 == 0o600


def test_it_refuses_the_placeholder_secret_key_of_the_env_example(tmp_path):
    placeholder = _env_example()["SECRET_KEY"]

    result = _settings_with(tmp_path, SECRET_KEY=placeholder, ALLOWED_HOSTS="example.org")

    assert result.returncode != 0
    assert "SECRET_KEY is still the placeholder from .env.example" in result.stderr


def test_check_deploy_reports_no_issue_with_the_readmes_production_environment(tmp_path):
    environment = _readme_production_environment()
    assert environment["SECRET_KEY"].startswith("<")  # the README shows how to make one, not a key
    environment["SECRET_KEY"] = secrets.token_urlsafe(50)

    result = _settings_with(tmp_path, script=["manage.py", "check", "--deploy"], **environment)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."
    assert "WARNING" not in result.stderr


def test_check_deploy_warns_without_them(tmp_path):
    result = _settings_with(tmp_path, script=["manage.py", "check", "--deploy"])

    assert "security.W004" in result.stderr and "security.W012" in result.stderr


def _env_example() -> dict[str, str]:
    lines = (BASE_DIR / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def _readme_production_environment() -> dict[str, str]:
    section = (BASE_DIR / "README.md").read_text().split("#### Production settings", 1)[1]
    block = section.split("```", 2)[1]
    return dict(line.split("=", 1) for line in block.strip().splitlines())


def test_it_reads_a_secret_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-0123456789\n")
    found = _probe(tmp_path, DEBUG="false", SECRET_KEY_FILE=str(secret_file), ALLOWED_HOSTS="example.org")
    assert found["secret"] == "from-a-file-0123456789"
    assert found["debug"] is False


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_it_rejects_a_boolean_it_cannot_read(tmp_path, value):
    result = _settings_with(tmp_path, DEBUG=value)
    assert result.returncode != 0
    assert "DEBUG must be true or false" in result.stderr
