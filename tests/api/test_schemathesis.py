"""Schemathesis over /api/schema/ against a live server: every check, stateful testing along the
schema's links, bounded per operation and in time. The API must answer every case as its schema says.

The runs it submits are recorded, not sent to a broker (the `enqueued` fixture): the contract is
the API's, not a worker's. SCHEMATHESIS_MAX_TIME and SCHEMATHESIS_MAX_EXAMPLES change the bounds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.api.conftest import require

MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25")
MAX_TIME = os.environ.get("SCHEMATHESIS_MAX_TIME", "90")

# A well-formed submit can still name an agent or capability that does not exist, or a prompt
# longer than the server's limit: the database and settings decide, not the schema, and the answer
# is a 400 saying which field. A key's `expires_at` must be in the future: the clock decides. Positive
# data is otherwise held to 2xx.
CONFIG = """
[[operations]]
include-operation-id = ["v1_runs_create", "v1_workflows_create", "v1_keys_create"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

# The report's `team` and `key` take the id of a team or key that made calls: the ledger decides, and
# any other id is a 400 naming the parameter (tests/metrics/test_sources_teams_keys.py).
[[operations]]
include-operation-id = ["v1_reports_monthly_retrieve", "v1_reports_monthly_csv_retrieve"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "429"]

# A cursor is opaque: only one the list gave out (in `next` / `previous`) is valid, and any other is
# a 400 (tests/agents/test_api_lists.py). Lists are fuzzed from the first page.
[[operations]]
include-operation-id = ["v1_runs_list", "v1_workflows_list"]
parameters = { "query.cursor" = "" }
"""


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr("agents.queue.run_enqueue", lambda *, run_id: sent.append(run_id))
    return sent


def test_the_api_answers_every_generated_case_as_its_schema_says(live_api, enqueued, tmp_path):
    require("schemathesis")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{live_api.url}/api/schema/?format=json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", MAX_EXAMPLES,
        "--max-time", MAX_TIME,
        "--workers", "1",
        "--header", f"Authorization: Bearer {live_api.token}",
        "--request-timeout", "30",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=int(MAX_TIME) + 240, cwd=tmp_path)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-20000:]
    assert "No issues found" in output or " passed" in output, output[-5000:]
