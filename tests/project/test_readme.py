"""The README's commands and addresses are the ones that work for someone who has never seen the project."""

import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
README = (BASE_DIR / "README.md").read_text()


def test_its_web_addresses_use_the_port_bin_run_serves_on():
    port = re.search(r"^PORT=\$\{PORT:-(\d+)\}$", (BASE_DIR / "bin" / "run").read_text(), re.M).group(1)
    addresses = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)/", README)
    assert addresses  # the first section gives the address
    assert set(addresses) == {port}


def test_it_runs_management_commands_with_bin_manage_outside_the_container():
    # `python manage.py` fails unless the venv is active; inside the image there is no bin/manage.
    lines = [line for line in README.splitlines() if "python manage.py" in line]
    assert all("docker compose" in line for line in lines), lines
    assert "bin/manage api_key_create" in README


def test_its_first_section_says_what_you_will_see_and_what_to_do_when_a_provider_is_not_reachable():
    first = README.split("## Try it", 1)[1].split("\n## ", 1)[0]
    assert "bin/run --local-model" in first and "bin/test" in first
    assert "show the routing and the ledger" in first  # the demo model is not there for good code
    assert "### When a provider is not reachable" in first
    for fix in ("OLLAMA_HOST", "ANTHROPIC_API_KEY", "bin/manage check_providers", "var/local-model.log"):
        assert fix in first, fix


def test_its_curl_examples_say_where_the_token_comes_from():
    # "$TOKEN" with nothing set sends an empty key: a 401 "Invalid token header" to someone who copied it.
    for example in re.findall(r"(?:^ {6}.*\n)+", README, re.M):
        if "$TOKEN" in example:
            assert re.search(r"^ *TOKEN=", example, re.M), example


def test_it_says_where_to_put_a_key_as_the_fix_sentences_do():
    # The dashboard says "put it in .env or the environment of the worker": bin/run reads .env.
    first = README.split("## Try it", 1)[1].split("\n## ", 1)[0]
    assert "`.env`" in first and "`bin/run` and `bin/manage` read it" in first
