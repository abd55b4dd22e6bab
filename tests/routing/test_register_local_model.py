from decimal import Decimal
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from routing.models import LLMModel, Provider

pytestmark = pytest.mark.django_db


def _provider(name: str, priority: int, *, local: bool) -> Provider:
    provider = Provider.objects.create(
        name=name,
        kind="ollama" if local else "openai",
        base_url="http://example.test",
        is_local=local,
        priority=priority,
        default_model="m",
    )
    LLMModel.objects.create(provider=provider, name="m")
    return provider


def test_it_slots_the_local_model_right_after_the_first_local_provider():
    _provider("ollama", 1, local=True)
    _provider("claude", 2, local=False)
    _provider("openai", 3, local=False)

    call_command("register_local_model", "--base-url", "http://127.0.0.1:8080")

    order = list(Provider.objects.order_by("priority").values_list("name", "priority"))
    assert order == [("ollama", 1), ("local-gemma", 2), ("claude", 3), ("openai", 4)]


def test_it_registers_an_explicit_zero_price_and_is_idempotent():
    call_command("register_local_model", "--base-url", "http://127.0.0.1:8080")
    call_command("register_local_model", "--base-url", "http://127.0.0.1:9090")

    provider = Provider.objects.get(name="local-gemma")
    assert provider.base_url == "http://127.0.0.1:9090"
    assert provider.is_local and provider.kind == "openai_compatible" and provider.priority == 1
    prices = list(LLMModel.objects.get(provider=provider, name="gemma3-270m").prices.all())
    assert [(p.input_per_mtok, p.output_per_mtok) for p in prices] == [(Decimal(0), Decimal(0))]


def test_its_zero_price_exports_as_the_cost_load_routing_writes_for_a_local_model(tmp_path):
    call_command("register_local_model", "--base-url", "http://127.0.0.1:8080")

    call_command("export_routing", "--output-dir", tmp_path, stdout=StringIO())

    local = yaml.safe_load((tmp_path / "local_provider.yaml").read_text())
    model = local["local-gemma"]["models"][0]
    assert model["cost"] == {"input_per_mtok": 0.0, "output_per_mtok": 0.0}
    assert "prices" not in model


def test_it_refuses_a_loopback_server_the_operator_did_not_allow_and_says_where_to_allow_it(settings):
    settings.SWITCHYARD_ALLOWED_PROVIDER_HOSTS = []  # bin/run --local-model adds 127.0.0.1:MODEL_PORT

    with pytest.raises(CommandError) as raised:
        call_command("register_local_model", "--base-url", "http://127.0.0.1:8080")

    assert str(raised.value) == (
        "local-gemma not registered: base_url: Refused: the host resolves to 127.0.0.1, a loopback address: "
        "providers on internal addresses are refused unless their host is listed in SWITCHYARD_ALLOWED_PROVIDER_HOSTS."
    )
    assert not Provider.objects.filter(name="local-gemma").exists()


def test_it_registers_the_demo_model_so_that_a_feature_finishes_on_two_cores():
    call_command("register_local_model", "--base-url", "http://127.0.0.1:8080", stdout=StringIO())

    provider = Provider.objects.get(name="local-gemma")
    # One request at a time, waited for (not failed after the policy's 30 s) while another run holds it.
    assert (provider.max_in_flight, provider.slot_wait_s, provider.request_timeout_s) == (1, 480.0, 180.0)
    model = LLMModel.objects.get(provider=provider, name="gemma3-270m")
    assert (model.max_output_tokens, model.is_demo, model.system_prompt) == (300, True, False)
    assert model.prompt_style == "completion"  # a base model: it continues a document, it does not chat


def test_its_demo_settings_survive_an_export_and_a_load(tmp_path):
    call_command("load_routing", stdout=StringIO())  # config/: a baseline model, which an export needs
    call_command("register_local_model", "--base-url", "http://127.0.0.1:8080", stdout=StringIO())
    call_command("export_routing", "--output-dir", tmp_path, stdout=StringIO())
    Provider.objects.filter(name="local-gemma").update(max_in_flight=None, slot_wait_s=None)
    LLMModel.objects.filter(name="gemma3-270m").update(max_output_tokens=None, is_demo=False, prompt_style="chat")

    call_command("load_routing", tmp_path / "llm_routing.yaml", tmp_path / "local_provider.yaml", stdout=StringIO())

    provider = Provider.objects.get(name="local-gemma")
    assert (provider.max_in_flight, provider.slot_wait_s) == (1, 480.0)
    model = LLMModel.objects.get(provider=provider, name="gemma3-270m")
    assert (model.max_output_tokens, model.is_demo, model.prompt_style) == (300, True, "completion")


def test_load_routing_after_it_moves_the_demo_model_after_the_providers_the_files_name(settings):
    call_command("load_routing", stdout=StringIO())
    call_command("register_local_model", "--base-url", "http://127.0.0.1:8080", stdout=StringIO())
    out = StringIO()

    call_command("load_routing", stdout=out)

    order = list(Provider.objects.order_by("priority").values_list("name", "priority"))
    assert order == [("ollama", 1), ("anthropic", 2), ("openai", 3), ("local-gemma", 4)]
    assert "moved provider local-gemma (not in the files) from priority 2 to 4: the files give 2 to anthropic" in (
        out.getvalue()
    )
    again = StringIO()
    call_command("load_routing", stdout=again)
    assert "no changes" in again.getvalue()
