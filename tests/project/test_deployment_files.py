"""The team deployment and the front door are files people run on other machines: check their shape."""

import os
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
    for script in ("bin/run", "bin/test", "bin/setup", ".ci/run"):
        assert os.access(BASE_DIR / script, os.X_OK), script


def test_the_docker_build_context_leaves_out_secrets_the_database_and_caches():
    ignored = {
        line.strip() for line in (BASE_DIR / ".dockerignore").read_text().splitlines() if not line.startswith("#")
    }
    for entry in (".env", ".venv/", "var/", ".git/", "**/__pycache__/", ".pytest_cache/", ".ruff_cache/", "*.sqlite3"):
        assert entry in ignored, entry
    assert "!.env.example" in ignored  # the template stays readable; only real .env files are left out
