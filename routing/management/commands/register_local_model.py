"""Register a llama.cpp (or any OpenAI-compatible) server on this machine as a local provider.

For trying Switchyard without an Ollama host: `bin/local-model` serves Gemma 3 270M, and this
command puts it right after the first local provider, so routing stays local first.

It is registered as the demo model, set up so that every run of a four-agent feature finishes on a
2-core machine (BENCHMARKS.md, "The demo model"): one request at a time (llama.cpp's server works on
one anyway, and cuts a streaming answer short when another request arrives), answers capped at
DEMO_MAX_OUTPUT_TOKENS, a request timeout that fits such an answer, and calls that wait for the slot
(up to DEMO_SLOT_WAIT_S) instead of failing after the policy's 30 s while another agent's run holds it.
The model is prompted as the base model it is: with a document that has started the answer.

The same server embeds under a second name (`--embedding-model`, bin/local-model's config): it is
registered as the provider's embedding model, so /v1/embeddings and /api/embed are answered locally
first; an empty name registers none.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import F

from routing.config.schema import LOCAL_COST_FROM
from routing.models import LLMModel, ModelKind, Price, PromptStyle, Provider, ProviderKind
from routing.table import invalidate_routing_cache

DEMO_MAX_OUTPUT_TOKENS = 300
DEMO_REQUEST_TIMEOUT_S = 180.0  # 300 tokens down to 1.7 tokens per second: a busy 2-core machine
DEMO_SLOT_WAIT_S = 480.0  # under the run's time limit (SWITCHYARD_RUN_TIME_LIMIT, 600 s)


class Command(BaseCommand):
    help = "Register a local OpenAI-compatible model server (llama.cpp) as a local provider."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8080")
        parser.add_argument("--name", default="local-gemma")
        parser.add_argument("--model", default="gemma3-270m", help="The model name the server answers to.")
        parser.add_argument("--capabilities", default="code_generation,testing,documentation,devops")
        parser.add_argument(
            "--embedding-model",
            default="gemma3-270m-embed",
            help="The name the server embeds under (bin/local-model's config); empty: it does not embed.",
        )

    def handle(
        self, *args, base_url: str, name: str, model: str, capabilities: str, embedding_model: str, **options
    ) -> None:
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
            provider.request_timeout_s = DEMO_REQUEST_TIMEOUT_S
            provider.max_in_flight = 1
            provider.slot_wait_s = DEMO_SLOT_WAIT_S
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
                defaults={
                    "context_window": 2048,  # as bin/local-model and docker-compose serve it (--n_ctx)
                    "system_prompt": False,
                    "capabilities": capability_list,
                    "max_output_tokens": DEMO_MAX_OUTPUT_TOKENS,
                    # Gemma 3 270M here is the base model (its GGUF has no chat template): it continues
                    # a document far better than it answers a chat turn.
                    "prompt_style": PromptStyle.COMPLETION,
                    "is_demo": True,
                },
            )
            embedder = None
            if embedding_model:
                embedder, _ = LLMModel.objects.update_or_create(
                    provider=provider,
                    name=embedding_model,
                    # The server's n_batch (512) bounds one input: llama-cpp-python cuts a longer one there.
                    # Not marked demo: that notice is about answers on the run pages, which never embed.
                    defaults={"kind": ModelKind.EMBEDDING, "context_window": 512},
                )
            for priced in (llm_model, embedder):
                if priced is not None and not priced.prices.exists():
                    # Local inference costs what the team says it costs: zero here, stated explicitly,
                    # and from the date load_routing gives a local `cost:`, so an export writes it as one.
                    Price.objects.create(
                        model=priced,
                        effective_from=LOCAL_COST_FROM,
                        input_per_mtok=Decimal(0),
                        output_per_mtok=Decimal(0),
                    )
        invalidate_routing_cache()
        self.stdout.write(
            self.style.SUCCESS(
                f"{name}: {model} at {base_url}, local, priority {provider.priority}; the demo model: "
                f"one request at a time, answers of up to {DEMO_MAX_OUTPUT_TOKENS} tokens"
                + (f"; embeddings from {embedding_model}." if embedding_model else ".")
            )
        )

    def _slot_after_first_local_provider(self) -> int:
        first_local = Provider.objects.filter(is_local=True).order_by("priority").first()
        priority = first_local.priority + 1 if first_local else 1
        Provider.objects.filter(priority__gte=priority).update(priority=F("priority") + 1)
        return priority
