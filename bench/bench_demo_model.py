"""The demo model (Gemma 3 270M, a base model) on the four agents' workflow prompts: chat or document.

    SWITCHYARD_MODELS_DIR=var/models .venv/bin/python bench/bench_demo_model.py [--max-tokens 300]

Starts the tests' llama.cpp server (tests/localmodel.py, 2 threads) and sends each agent's task
for one feature twice, through the project's own adapter and prompt builders, not streamed:

- chat: the agent's system prompt folded into the user turn (fold_system_prompt), on
  /v1/chat/completions with Gemma's turn markers: what the demo model got before;
- completion: the same conversation as one document that opens the answer's code block
  (completion_prompt + the agent's answer_start), on /v1/completions: LLMModel.prompt_style
  "completion", what register_local_model sets now.

Prints per agent and style: seconds, completion tokens, tokens per second, the agent's quality
check, and the share of the answer's lines copied from the prompt (a base model's failure mode).
The two styles alternate per agent, so machine load affects both alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django

django.setup()

import yaml  # noqa: E402

from agents.quality import answer_start, check_output  # noqa: E402
from routing.providers import get_adapter  # noqa: E402
from routing.providers.base import ChatRequest, ProviderConfig, completion_prompt, fold_system_prompt  # noqa: E402
from tests.localmodel import LocalModelServer  # noqa: E402

FEATURE = "invoices: list, create and fetch a customer's invoices"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "llm_routing.yaml"


def copied_share(prompt: str, answer: str) -> float:
    seen = {line.strip() for line in prompt.splitlines() if line.strip()}
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    return sum(line in seen for line in lines) / len(lines) if lines else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=300)
    args = parser.parse_args()
    server = LocalModelServer().start()
    adapter = get_adapter(
        ProviderConfig(name="demo", kind="openai_compatible", base_url=server.base_url, is_local=True,
                       request_timeout_s=600)
    )  # fmt: skip
    print(f"{'agent':8} {'style':10} {'s':>6} {'tokens':>6} {'tok/s':>6}  quality  copied")
    try:
        for slug, agent in yaml.safe_load(CONFIG.read_text())["agents"].items():
            task = agent["workflow_prompt"].replace("{feature}", FEATURE)
            messages = [{"role": "system", "content": agent["system_prompt"]}, {"role": "user", "content": task}]
            start = answer_start(agent["quality_check"])
            for style in ("chat", "completion"):
                as_document = style == "completion"
                request = ChatRequest(
                    model=server.model,
                    messages=fold_system_prompt(messages),
                    max_tokens=args.max_tokens,
                    temperature=agent["temperature"],
                    prompt=completion_prompt(messages, answer_start=start) if as_document else None,
                )
                began = time.perf_counter()
                completion = adapter.chat(request)
                seconds = time.perf_counter() - began
                answer = (start if as_document else "") + completion.text
                prompt = request.prompt or request.messages[0]["content"]
                quality = check_output(agent["quality_check"], answer)
                tokens = completion.completion_tokens or 0
                print(
                    f"{slug:8} {style:10} {seconds:6.1f} {tokens:6d} {tokens / seconds:6.1f}  "
                    f"{'pass' if quality.ok else 'fail':7}  {copied_share(prompt, answer):5.0%}",
                    flush=True,
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
