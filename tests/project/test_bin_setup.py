"""bin/setup: installs once, and again only when the requirements change."""

import hashlib
import shutil
import subprocess
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
HASHED = ("requirements.txt", "requirements-dev.txt", "requirements-local-model.txt", "bin/install-local-model")
FILES = (*HASHED, "bin/setup")


def _project_with_a_venv(tmp_path: Path, *, stamp_suffix: str) -> Path:
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BASE_DIR / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/pip-calls\n')  # records what pip would install
    python.chmod(0o755)
    hashed = hashlib.sha256(b"".join((BASE_DIR / name).read_bytes() for name in HASHED)).hexdigest()[:16]
    (tmp_path / ".venv" / ".requirements-stamp").write_text(hashed + stamp_suffix + "\n")
    return tmp_path


def test_bin_run_after_bin_run_local_model_installs_nothing(tmp_path):
    # Alternating the two went through pip and "the first build of llama.cpp takes a few minutes" each time.
    project = _project_with_a_venv(tmp_path, stamp_suffix="-model")

    result = subprocess.run(["bin/setup"], cwd=project, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert not (project / "pip-calls").exists(), (project / "pip-calls").read_text()


def test_it_installs_the_model_when_it_is_asked_for_the_first_time(tmp_path):
    project = _project_with_a_venv(tmp_path, stamp_suffix="")

    result = subprocess.run(["bin/setup", "--model"], cwd=project, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "-r requirements-local-model.txt" in (project / "pip-calls").read_text()
