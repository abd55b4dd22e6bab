"""What every HTTP adapter shares: one keep-alive client, timeouts, and turning failures into our errors.

No httpx exception leaves this module's callers: a transport failure, a timeout, a broken stream
or a body that is not JSON becomes a `TransientError`; an HTTP error status becomes transient
(408, 409, 425, 429, 5xx, Anthropic's 529) or permanent (every other 4xx). Messages are short and
human, never contain the API key, and leave out the provider's name (the router adds it).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from routing.providers.base import (
    ChatRequest,
    ChunkHook,
    Completion,
    PermanentError,
    ProviderConfig,
    ProviderError,
    TransientError,
)

MAX_MESSAGE_CHARS = 240
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
KEEPALIVE = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)
SERVER_CLOSE_WAIT_MAX_S = 5.0  # after a timeout, the longest a slot waits for the server to let go
SERVER_CLOSE_POLL_S = 0.01
TCP_STATES_AWAITING_SERVER = frozenset({1, 4, 5})  # Linux tcp_states.h: ESTABLISHED, FIN_WAIT1, FIN_WAIT2


class HTTPAdapter:
    """Base for one protocol. Subclasses implement `send_chat` and `fetch_models` with the helpers below."""

    def __init__(self, config: ProviderConfig, *, client: httpx.Client | None = None) -> None:
        self.config = config
        self.timeout = httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s)
        # One client per provider: its pool keeps connections alive between calls.
        self.client = client or httpx.Client(timeout=self.timeout, limits=KEEPALIVE)

    def chat(self, request: ChatRequest, *, on_chunk: ChunkHook | None = None) -> Completion:
        """One completion; a streamed one calls `on_chunk` per event, which may cut it (CallCancelled)."""
        with self.errors():
            return self.send_chat(request, on_chunk=on_chunk)

    def list_models(self) -> list[str]:
        with self.errors():
            return self.fetch_models()

    def can_serve(self, model: str) -> bool | None:
        """Whether the host has `model` right now; None when this protocol cannot tell cheaply
        (the call itself then finds out). The router asks before every attempt, so it must be fast."""
        return None

    def forget(self) -> None:
        """Drop what this adapter remembers about its host (the routing configuration changed)."""

    def send_chat(
        self, request: ChatRequest, *, on_chunk: ChunkHook | None = None
    ) -> Completion:  # pragma: no cover - every protocol implements it
        raise NotImplementedError

    def fetch_models(self) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        self.client.close()

    # -- keys ------------------------------------------------------------------------------
    def api_key(self, *, required: bool) -> str:
        """The key from the environment, read at call time so a rotated key is picked up without a restart."""
        name = self.config.api_key_env
        key = os.environ.get(name, "") if name else ""
        if required and not key:
            raise PermanentError(f"no key ({name} is not set)" if name else "no API key variable configured")
        if key and (problem := key_problem(key)):
            # Sent as a header it would fail deep in the HTTP client (or as an unreadable 401); say which variable.
            raise PermanentError(f"{name} is not a usable API key: {problem}")
        return key

    # -- requests --------------------------------------------------------------------------
    def get_json(self, url: str, *, headers: dict[str, str] | None = None, key: str = "") -> Any:
        with self.request("GET", url, headers=headers, key=key) as response:
            return self.parse(b"".join(response.chunks))

    def post_json(self, url: str, body: dict, *, headers: dict[str, str] | None = None, key: str = "") -> Any:
        with self.request("POST", url, body=body, headers=headers, key=key) as response:
            return self.parse(b"".join(response.chunks))

    @contextmanager
    def stream_lines(
        self, url: str, body: dict, *, headers: dict[str, str] | None = None, key: str = "", sse: bool = False
    ) -> Iterator[Iterator[str]]:
        """POST and yield the response's lines, split only where the protocol says (see `split_lines`).

        A caller that stops at the protocol's last event leaves the body's end unread (the chunked
        terminator, a trailing blank line): it is read here, so the connection goes back to the pool
        instead of being closed. The answer is complete by then: a tail that breaks or outlasts the
        deadline only costs the connection. A caller leaving with an exception (an error, a cancel)
        closes it.
        """
        with self.request("POST", url, body=body, headers=headers, key=key) as response:
            yield split_lines(response.chunks, sse=sse)
            with suppress(ProviderError, httpx.HTTPError):
                for _ in response.chunks:
                    pass

    @contextmanager
    def request(
        self, method: str, url: str, *, body: dict | None = None, headers: dict[str, str] | None = None, key: str = ""
    ) -> Iterator[Exchange]:
        """One exchange under a hard deadline of `request_timeout_s` from start to the last byte.

        httpx's read timeout bounds each read, not the whole: a body that trickles in, or a stream that
        keeps sending, would run on. A watchdog cuts the connection when the deadline passes, which
        ends a read blocked at that moment too.
        """
        deadline = Deadline(self.config.request_timeout_s)
        timeout = httpx.Timeout(self.config.request_timeout_s, connect=self.config.connect_timeout_s)
        try:
            with (
                self.errors(key),
                self.client.stream(method, url, json=body, headers=headers, timeout=timeout) as response,
                deadline.watching(response),
            ):
                if response.status_code >= 400:
                    self.raise_for_status(response, key, body=b"".join(deadline.bounded(response.iter_bytes())))
                yield Exchange(response, deadline.bounded(response.iter_bytes()))
        except ProviderError:
            if deadline.expired:
                raise self.timed_out() from None
            raise
        finally:
            deadline.hand_over()

    def timed_out(self) -> TransientError:
        return TransientError(f"timed out after {self.config.request_timeout_s:g} s")

    @staticmethod
    def parse(content: bytes | str) -> Any:
        try:
            return json.loads(content)
        except ValueError:
            raise TransientError("the response was not valid JSON") from None

    # -- errors ----------------------------------------------------------------------------
    @contextmanager
    def errors(self, key: str = "") -> Iterator[None]:
        try:
            yield
        except ProviderError as error:
            error.message = scrub(error.message, key or self.api_key(required=False))
            error.args = (error.message,)
            raise
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as error:
            raise self.transport_error(error) from None
        except UnicodeError:
            # A header value httpx cannot encode (api_key() refuses such keys; this guards every other header).
            raise PermanentError("a request header holds characters HTTP cannot send") from None
        except (KeyError, IndexError, TypeError, AttributeError):
            # Valid JSON in the wrong shape: not the protocol we expected (a proxy's page, another API).
            raise TransientError("the response was not in the expected format") from None

    def transport_error(self, error: Exception) -> ProviderError:
        if isinstance(error, httpx.ConnectTimeout):
            return TransientError(f"could not connect within {self.config.connect_timeout_s:g} s")
        if isinstance(error, httpx.TimeoutException):
            return self.timed_out()
        if isinstance(error, httpx.ConnectError):
            refused = "refused" in str(error).lower()
            return TransientError("connection refused" if refused else "could not connect")
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return TransientError("the connection broke mid-response")
        if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return PermanentError("the base URL is not a valid http(s) URL")
        return TransientError(f"HTTP failure ({type(error).__name__})")

    def raise_for_status(self, response: httpx.Response, key: str = "", *, body: bytes = b"") -> None:
        if response.status_code < 400:
            return
        status = response.status_code
        detail = scrub(self.error_detail(status, body), key)
        message = short(f"{status} {detail}".strip())
        transient = self.is_transient(status, body)
        raise (TransientError if transient else PermanentError)(
            message, status_code=status, retry_after=retry_after(response.headers.get("retry-after"))
        )

    def is_transient(self, status: int, body: bytes) -> bool:
        """Worth trying again later; subclasses know the permanent cases hidden behind a 429 or 5xx."""
        return status in TRANSIENT_STATUSES or status >= 500

    def error_detail(self, status: int, body: bytes) -> str:
        """The protocol's own words for the error; subclasses know where they are in the body."""
        return short(body.decode("utf-8", "replace"))


@dataclass
class Exchange:
    """A response whose headers have arrived, and its body as raw chunks under the call's deadline."""

    response: httpx.Response
    chunks: Iterator[bytes]


class Deadline:
    """A hard end for one exchange: past it, reads stop and the connection is given up.

    The call ends at the deadline, but the server may go on working on the request (generating
    tokens) until it notices: giving up sends our FIN (shutdown for writing) and keeps our end
    open, so that `wait_for_servers_to_close` can hold the call's in-flight slot until the server
    has closed its end too (a provider's in-flight cap then counts what the server is really
    still serving). A body still arriving wakes the read, which stops at the deadline; a read
    still blocked WAKE_GRACE_S later (a silent server) is woken by shutting the socket both ways.
    """

    WAKE_GRACE_S = 0.2

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._done = False
        self._sock: socket.socket | None = None
        self._given_up: socket.socket | None = None  # our own handle on the abandoned connection

    def bounded(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if time.monotonic() > self.at:
                self._give_up()
                raise TransientError(f"timed out after {self.seconds:g} s")
            yield chunk

    @contextmanager
    def watching(self, response: httpx.Response) -> Iterator[None]:
        stream = response.extensions.get("network_stream")
        self._sock = stream.get_extra_info("socket") if stream is not None else None
        left = max(0.0, self.at - time.monotonic())
        timers = [threading.Timer(left, self._give_up), threading.Timer(left + self.WAKE_GRACE_S, self._wake)]
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            with self._lock:
                self._done = True  # from here the connection may go back to the pool: never cut it
            for timer in timers:
                timer.cancel()

    def _give_up(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            if self._sock is None or self._given_up is not None:
                return
            with suppress(OSError):
                self._given_up = self._sock.dup()  # keeps the connection open when the client closes its handle
                self._sock.shutdown(socket.SHUT_WR)

    def _wake(self) -> None:
        with self._lock:
            if self._done or self._given_up is None:
                return
            with suppress(OSError):
                self._given_up.shutdown(socket.SHUT_RDWR)  # ends the read blocked on it

    def hand_over(self) -> None:
        """The exchange is over: a connection given up goes to the `given_up_connections()` block
        around the call (its in-flight slot waits for the server to let go), else it is closed."""
        with self._lock:
            self._done = True
            sock, self._given_up, self._sock = self._given_up, None, None
        if sock is None:
            return
        sink = _given_up_sink.get()
        if sink is None:
            sock.close()
        else:
            sink.append(sock)


_given_up_sink: ContextVar[list[socket.socket] | None] = ContextVar("given_up_sink", default=None)


@contextmanager
def given_up_connections() -> Iterator[list[socket.socket]]:
    """Collect the connections calls inside the block gave up at their deadline, still open, for
    `wait_for_servers_to_close` (the caller then owns them)."""
    sink: list[socket.socket] = []
    token = _given_up_sink.set(sink)
    try:
        yield sink
    finally:
        _given_up_sink.reset(token)


def wait_for_servers_to_close(sockets: list[socket.socket], *, limit_s: float = SERVER_CLOSE_WAIT_MAX_S) -> None:
    """Wait up to `limit_s` until the server of each given-up connection has closed its end (or
    reset it), reading and dropping what it still sends so that its writes never block; then close them."""
    end = time.monotonic() + limit_s
    pending = list(sockets)
    try:
        for sock in pending:
            sock.setblocking(False)
        while pending and time.monotonic() < end:
            pending = [sock for sock in pending if _server_still_there(sock)]
            if pending:
                time.sleep(SERVER_CLOSE_POLL_S)
    finally:
        for sock in sockets:
            sock.close()


def _server_still_there(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        return False  # reset: the server's end is gone
    if not hasattr(socket, "TCP_INFO"):
        return False  # only Linux tells a socket's TCP state: do not wait elsewhere
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]  # tcpi_state, the first byte
    except OSError:
        return False
    return state in TCP_STATES_AWAITING_SERVER


def split_lines(chunks: Iterator[bytes], *, sse: bool = False) -> Iterator[str]:
    """The lines of a byte stream, split only on the protocol's own line ends.

    NDJSON ends lines with LF (CRLF tolerated); server-sent events with CRLF, LF or a lone CR. JSON
    text may hold U+2028, U+2029, U+0085 or form feeds: `str.splitlines` (and so httpx's `iter_lines`)
    would cut a line there. Splitting bytes is safe: UTF-8 never uses CR or LF inside a character.
    """
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if sse:
                cr = pending.find(b"\r", start)
                if cr != -1 and (end == -1 or cr < end):
                    if cr + 1 == len(pending):
                        break  # a CR at the end may be the first half of CRLF: wait for the next chunk
                    end = cr
            if end == -1:
                break
            line = pending[start:end]
            start = end + 1
            if pending[end : end + 1] == b"\r" and pending[start : start + 1] == b"\n":
                start += 1
            yield decode_line(bytes(line.rstrip(b"\r")))
        del pending[:start]
    if pending.rstrip(b"\r"):
        yield decode_line(bytes(pending.rstrip(b"\r")))


def decode_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise TransientError("the stream was not valid UTF-8") from None


def key_problem(key: str) -> str:
    """Why this text cannot be an API key, or "" (never quotes the key)."""
    if not key.isascii():
        return "it holds a non-ASCII character"
    if key != key.strip():
        return "it starts or ends with whitespace or a line break (a newline from the file it came from?)"
    if not key.isprintable() or " " in key:
        return "it holds whitespace or a control character"
    return ""


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


# Anything shaped like a secret: provider keys (also masked, "sk-proj-****abcd"), bearer tokens,
# and long runs of hex or base64 that mix letters and digits (a long hyphenated name is no secret).
KEY_SHAPED = re.compile(
    r"(?P<key>\b(?:sk-ant-|sk-proj-)[\w*.-]*[\w*]|\bsk-[\w*.-]{16,}[\w*]|(?<=\bBearer )[^\s\"',;]+)"
    r"|(?P<long>[\w+/=-]{32,})",
    re.IGNORECASE,
)
KEY_FRAGMENT_CHARS = 8  # this many characters of the real key in a row are a leak


def scrub(text: str, key: str) -> str:
    """`text` (an upstream's error words) with anything key-shaped, and any part of the key, as "***"."""
    text = KEY_SHAPED.sub(_key_shaped, text)
    if len(key) < KEY_FRAGMENT_CHARS:
        return text.replace(key, "***") if key else text
    pieces = {key[i : i + KEY_FRAGMENT_CHARS] for i in range(len(key) - KEY_FRAGMENT_CHARS + 1)}
    hidden = [False] * len(text)
    for i in range(len(text) - KEY_FRAGMENT_CHARS + 1):
        if text[i : i + KEY_FRAGMENT_CHARS] in pieces:
            hidden[i : i + KEY_FRAGMENT_CHARS] = [True] * KEY_FRAGMENT_CHARS
    kept, i = [], 0
    while i < len(text):
        if hidden[i]:
            kept.append("***")
            while i < len(text) and hidden[i]:
                i += 1
        else:
            kept.append(text[i])
            i += 1
    return "".join(kept)


def _key_shaped(match: re.Match[str]) -> str:
    found = match.group()
    if match.group("long") and not (re.search("[0-9]", found) and re.search("[A-Za-z]", found)):
        return found
    return "***"


def short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def v1_url(base_url: str, path: str) -> str:
    """`https://api.openai.com` and `https://api.openai.com/v1` both name the same API."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path.lstrip('/')}"
