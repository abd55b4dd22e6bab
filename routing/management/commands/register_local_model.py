"""Register a llama.cpp (or any OpenAI-compatible) server on this machine as a local provider.

For trying Switchyard without an Ollama host: `bin/local-model` serves Gemma 3 270M, and this
command puts it right after the first local provider, so routing stays local first.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import F

from routing.config.schema import LOCAL_COST_FROM
from routing.models import LLMModel, Price, Provider, ProviderKind
from routing.table import invalidate_routing_cache


class Command(BaseCommand):
    help = "Register a local OpenAI-compatible model server (llama.cpp) as a local provider."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8080")
        parser.add_argument("--name", default="local-gemma")
        parser.add_argument("--model", default="gemma3-270m", help="The model name the server answers to.")
        parser.add_argument("--capabilities", default="code_generation,testing,documentation,devops")

    def handle(self, *args, base_url: str, name: str, model: str, capabilities: str, **options) -> None:
        capability_list = [item.strip() for item in capabilities.split(",") if item.strip()]
        with transaction.atomic():
            provider = Provider.objects.select_for_update().filter(name=name).first()
            if provider is None:
                priority = self._slot_after_first_local_provider()
                provider = Provider(name=name, priority=priority)
            provider.kind = ProviderKind.OPENAI_COMPATIBLE
            provider.base_url = base_url
            provider.is_local = True
            provider.enabled = True
            provider.capabilities = capability_list
            provider.default_model = model
            try:
                provider.full_clean()
            except ValidationError as exc:  # e.g. a loopback address SWITCHYARD_ALLOWED_PROVIDER_HOSTS does not list
                problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
                raise CommandError(f"{name} not registered: {problems}") from None
            provider.save()
            llm_model, _ = LLMModel.objects.update_or_create(
                provider=provider,
                name=model,
                # Gemma's chat template has no system role: the agents' instructions go in the first user turn.
                defaults={"context_window": 4096, "system_prompt": False, "capabilities": capability_list},
            )
            if not llm_model.prices.exists():
                # Local inference costs what the team says it costs: zero here, stated explicitly,
                # and from the date load_routing gives a local `cost:`, so an export writes it as one.
                Price.objects.create(
                    model=llm_model,
                    effective_from=LOCAL_COST_FROM,
                    input_per_mtok=Decimal(0),
                    output_per_mtok=Decimal(0),
                )
        invalidate_routing_cache()
        self.stdout.write(self.style.SUCCESS(f"{name}: {model} at {base_url}, local, priority {provider.priority}."))

    def _slot_after_first_local_provider(self) -> int:
        first_local = Provider.objects.filter(is_local=True).order_by("priority").first()
        priority = first_local.priority + 1 if first_local else 1
        Provider.objects.filter(priority__gte=priority).update(priority=F("priority") + 1)
        return priority
