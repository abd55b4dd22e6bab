"""The team deployment and the front door are files people run on other machines: check their shape."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

BASE_DIR = Path(__file__).resolve().parents[2]


def test_the_compose_file_runs_postgres_redis_web_worker_and_beat_on_one_image():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://")
        assert env["DEBUG"] == "false"
    assert "worker" in services["worker"]["command"]
    assert "beat" in services["beat"]["command"]


def test_the_readme_gives_the_run_and_test_commands_that_ci_uses():
    readme = (BASE_DIR / "README.md").read_text()
    ci = (BASE_DIR / ".ci" / "run").read_text()
    assert "bin/run" in readme and "bin/test" in readme
    assert "\nbin/test\n" in ci and "bin/run" in ci


def test_the_scripts_are_executable():
    for script in ("bin/run", "bin/test", "bin/setup", "bin/docker-entrypoint", ".ci/run"):
        assert os.access(BASE_DIR / script, os.X_OK), script


def test_the_docker_build_context_leaves_out_secrets_the_database_and_caches():
    ignored = {
        line.strip() for line in (BASE_DIR / ".dockerignore").read_text().splitlines() if not line.startswith("#")
    }
    for entry in (".env", ".venv/", "var/", ".git/", "**/__pycache__/", ".pytest_cache/", ".ruff_cache/", "*.sqlite3"):
        assert entry in ignored, entry
    assert "!.env.example" in ignored  # the template stays readable; only real .env files are left out


def _entrypoint(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "CELERY_", "SECRET_KEY", "DEBUG"))
    }
    env.update({"SWITCHYARD_VAR_DIR": str(tmp_path / "var"), "PYTHON": sys.executable, **environment})
    return subprocess.run(
        ["bin/docker-entrypoint", "echo", "started"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_image_starts_every_service_through_the_entrypoint():
    assert 'ENTRYPOINT ["bin/docker-entrypoint"]' in (BASE_DIR / "Dockerfile").read_text()


def test_the_container_refuses_to_start_with_the_placeholder_secret_key_of_the_env_example(tmp_path):
    placeholder = next(
        line.split("=", 1)[1]
        for line in (BASE_DIR / ".env.example").read_text().splitlines()
        if line.startswith("SECRET_KEY=")
    )

    result = _entrypoint(tmp_path, SECRET_KEY=placeholder)

    assert result.returncode != 0
    assert "SECRET_KEY is still the placeholder from .env.example" in result.stderr
    assert "started" not in result.stdout


def test_the_container_refuses_to_start_without_a_secret_key(tmp_path):
    result = _entrypoint(tmp_path)

    assert result.returncode == 1
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr
    assert "started" not in result.stdout


def test_the_container_runs_its_command_with_a_secret_key_of_its_own(tmp_path):
    result = _entrypoint(tmp_path, SECRET_KEY=secrets.token_urlsafe(50))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"
