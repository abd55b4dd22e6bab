"""Settings come from the environment; these run a fresh interpreter per case so nothing leaks."""

import json
import os
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


def _settings_with(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "REDIS_", "CELERY_"))}
    env.pop("SECRET_KEY", None)
    env.pop("DEBUG", None)
    env.update({"DJANGO_SETTINGS_MODULE": "project.settings", "SWITCHYARD_VAR_DIR": str(tmp_path / "var")})
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
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


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    result = _settings_with(tmp_path, DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


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
