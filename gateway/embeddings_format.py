"""The embeddings wire formats, pure: OpenAI's POST /v1/embeddings and Ollama's POST /api/embed.

OpenAI (openai-python: types/embedding_create_params.py, create_embedding_response.py): the request
is {input: a string or a list of strings, model, encoding_format "float"|"base64", dimensions, user};
the answer {object: "list", data: [{object: "embedding", index, embedding}], model, usage:
{prompt_tokens, total_tokens}}. The official client asks for base64 unless told otherwise and decodes
it as little-endian float32. Token arrays (lists of integers) are refused by name: the routed models
tokenize differently, so a token id means nothing to the next provider.

Ollama (docs/api.md, "Generate Embeddings"): {model, input: a string or a list of strings, truncate,
dimensions, options, keep_alive}; the answer {model, embeddings, total_duration, load_duration,
prompt_eval_count}, durations in nanoseconds; errors {"error": "..."}.

Both read into one `EmbedParams`; errors are `OpenAIError`s, which the Ollama view writes in its shape.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass

from gateway.openai_format import invalid, json_loads
from routing.embedding import EmbedResult

MAX_INPUTS = 2048  # OpenAI's limit on one request's list
ENCODINGS = ("float", "base64")


@dataclass(frozen=True)
class EmbedParams:
    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    encoding_format: str = "float"
    truncate: bool = True  # Ollama's: cut an over-long input (OpenAI's API refuses one: there it is False)


def _body(raw: bytes) -> dict:
    try:
        body = json_loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("We could not parse the JSON body of your request: send a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("You must provide a model parameter.", "model")
    return model.strip()


def _inputs(value: object) -> tuple[str, ...]:
    """A string or a list of strings, none empty, at most MAX_INPUTS."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise invalid("Invalid 'input': expected a non-empty string or a non-empty array of strings.", "input")
    if any(isinstance(item, int | list) and not isinstance(item, bool) for item in texts):
        raise invalid(
            "Invalid 'input': token arrays are not supported by this gateway (its models tokenize differently): "
            "send the text.",
            "input",
            "unsupported_value",
        )
    if len(texts) > MAX_INPUTS:
        raise invalid(f"Invalid 'input': at most {MAX_INPUTS} inputs in one request, got {len(texts)}.", "input")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise invalid(f"Invalid 'input[{index}]': expected a non-empty string.", f"input[{index}]")
    return tuple(texts)


def _dimensions(body: dict) -> int | None:
    value = body.get("dimensions")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(f"Invalid 'dimensions': expected a positive integer, got {json.dumps(value)}.", "dimensions")
    return value


def openai_params(raw: bytes) -> EmbedParams:
    """A /v1/embeddings request read and checked; raises OpenAIError (400) naming the parameter at fault."""
    body = _body(raw)
    model = _model(body)
    if "input" not in body:
        raise invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise invalid(
            f"Invalid 'encoding_format': expected one of {', '.join(ENCODINGS)}, got {json.dumps(encoding)}.",
            "encoding_format",
        )
    return EmbedParams(
        model=model,
        inputs=_inputs(body["input"]),
        dimensions=_dimensions(body),
        encoding_format=encoding or "float",
        truncate=False,
    )


def ollama_params(raw: bytes) -> EmbedParams:
    """An /api/embed request read and checked; raises OpenAIError (400), which the view writes as Ollama's error.

    No input at all (absent, "" or []) is Ollama's way to load a model: `inputs` is empty, and the
    answer has no embeddings (as Ollama's EmbedHandler answers it)."""
    body = _body(raw)
    model = _model(body)
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise invalid("Invalid 'truncate': expected true or false.", "truncate")
    given = body.get("input")
    inputs = () if given in (None, "", []) else _inputs(given)
    return EmbedParams(model=model, inputs=inputs, dimensions=_dimensions(body), truncate=truncate)


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as the official client decodes it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def openai_body(result: EmbedResult, params: EmbedParams) -> dict:
    """A CreateEmbeddingResponse; usage from the ledger row (the provider's count, else its estimate)."""
    tokens = result.entry.prompt_tokens
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encoded(vector, params.encoding_format)}
            for index, vector in enumerate(result.embeddings.vectors)
        ],
        "model": result.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def ollama_empty_body(model: str) -> dict:
    """Ollama's answer to a request with no input: the model named, no embeddings, nothing called."""
    return {"model": model, "embeddings": []}


def ollama_body(result: EmbedResult, *, total_ns: int) -> dict:
    """Ollama's EmbedResponse: the load time is the upstream Ollama's when it said, else 0."""
    return {
        "model": result.model,
        "embeddings": result.embeddings.vectors,
        "total_duration": total_ns,
        "load_duration": int(result.embeddings.raw_usage.get("load_duration") or 0),
        "prompt_eval_count": result.entry.prompt_tokens,
    }
