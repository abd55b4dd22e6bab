"""A loopback HTTP server that plays one provider's protocol, with behaviours a test can set.

Each fake (Ollama, OpenAI, Anthropic) subclasses `FakeProvider` and supplies the protocol:
how a completion, a stream and each error look on the wire. The behaviour is shared:

    server.behave("rate_limited")             every request from now on answers 429
    server.behave("ok", delay=2.0)            answer normally, after 2 s (a timeout for a 1 s client)
    server.behave("ok", chunk_delay=0.05)     stream chunks 50 ms apart
    server.script("busy", "busy")             the next two requests answer 503 busy, then the default again
    server.models = ["m1"]                    what the server offers; any other model gets the real 404
    server.reply = "Hi"                       the completion text (one token per word)
    server.usage = {...}                      the usage every answer reports, as the protocol spells it
                                              (Anthropic, OpenAI); None: counted from the request
    server.finish_reason = "length"           how every answer says it ended; None: the usual "stop"
    server.requests                           what was received: RecordedRequest(method, path, headers, json)
    server.max_in_flight                      the most requests ever handled at the same time

Modes: ok, rate_limited (429), server_error (500), unavailable (503; Ollama: "server busy"),
busy (Ollama's 503), overloaded (Anthropic 529, OpenAI 503), unauthorized (401), forbidden (403),
bad_request (400), unknown_model (404), broken_stream (the connection drops part-way through the
body), stream_error (the protocol's own error event in the middle of a stream), interrupted
(OpenAI: `data: [DONE]` part-way through a stream, with no finish_reason), invalid_json
(200 with a body that is not JSON), wrong_shape (200 with JSON that is not the protocol's: what a
base URL pointing at some other service gets).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = frozenset(
    {
        "ok",
        "interrupted",
        "rate_limited",
        "server_error",
        "unavailable",
        "busy",
        "overloaded",
        "unauthorized",
        "forbidden",
        "bad_request",
        "unknown_model",
        "broken_stream",
        "stream_error",
        "invalid_json",
        "wrong_shape",
    }
)


@dataclass(frozen=True)
class Behaviour:
    mode: str = "ok"
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between stream chunks


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    client_port: int = 0  # the same port on two requests means the client kept the connection alive


@dataclass
class Reply:
    """What a protocol handler wants sent: a JSON body, or a stream of raw chunks."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterator[bytes] | None = None
    content_type: str = "application/json"
    break_after: int | None = None  # drop the connection after this many chunks (or body bytes)


class FakeProvider:
    kind = ""
    default_models: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.models: list[str] = list(self.default_models)
        self.reply = "Hello from the fake server, ready to help."
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.api_key: str | None = None  # when set, requests must carry this key
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._default = Behaviour()
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=f"fake-{self.kind}", daemon=True
        )  # a short poll interval makes stop() quick

    # -- what tests call -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def behave(self, mode: str = "ok", *, delay: float = 0.0, chunk_delay: float = 0.0) -> None:
        self._check(mode)
        with self._lock:
            self._default = Behaviour(mode, delay, chunk_delay)
            self._script.clear()

    def script(self, *modes: str | Behaviour) -> None:
        """One behaviour per coming request, in order; then the default again."""
        steps = [step if isinstance(step, Behaviour) else Behaviour(step) for step in modes]
        for step in steps:
            self._check(step.mode)
        with self._lock:
            self._script.extend(steps)

    def reset(self) -> None:
        with self._lock:
            self._default = Behaviour()
            self._script.clear()
            self.requests.clear()
            self.max_in_flight = self.in_flight
            self.models = list(self.default_models)
            self.api_key = None
            self.usage = None
            self.finish_reason = None

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what protocol subclasses implement ------------------------------------------------
    def handle(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:  # pragma: no cover
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------------------
    def completion_tokens(self) -> int:
        return len(self.reply.split())

    def prompt_tokens(self, messages: list[dict]) -> int:
        # Deterministic, so tests can assert the counts a server reports.
        return sum(len(str(m.get("content", "")).split()) + 4 for m in messages or [])

    def pieces(self) -> list[str]:
        words = self.reply.split(" ")
        return [word if i == 0 else " " + word for i, word in enumerate(words)]

    def paced(self, chunks: Iterator[bytes], behaviour: Behaviour) -> Iterator[bytes]:
        for index, chunk in enumerate(chunks):
            if index and behaviour.chunk_delay and self._stopping.wait(behaviour.chunk_delay):
                return
            yield chunk

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _check(mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {sorted(MODES)}")

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def _enter(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connecting at once (a bench) are not reset
    fake: FakeProvider


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real servers
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        request = RecordedRequest(
            self.command,
            self.path.split("?")[0],
            {k.lower(): v for k, v in self.headers.items()},
            payload,
            self.client_address[1],
        )
        behaviour = fake._next_behaviour()
        fake._enter(request)
        try:
            if behaviour.delay and fake._stopping.wait(behaviour.delay):
                return
            if behaviour.mode == "wrong_shape":
                self._send(Reply(body=["this", "is", "not", "the", "protocol"]))
            else:
                self._send(fake.handle(request, behaviour))
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (it timed out): nothing to tell it
        finally:
            fake._leave()

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is None:
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if reply.break_after is not None:
                self.wfile.write(body[: reply.break_after])
                self._drop()
                return
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, chunk in enumerate(reply.chunks):
            if reply.break_after is not None and index >= reply.break_after:
                self._drop()
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close the socket mid-body, as a crashed or restarted server does."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def json_line(data: Any) -> bytes:
    return json.dumps(data).encode() + b"\n"


def sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def now_ns() -> int:
    return time.time_ns()
