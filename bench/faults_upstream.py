"""A counting OpenAI-compatible upstream for bench/faults.py: its own loopback process.

    python bench/faults_upstream.py --port 8123 --label local --model m --delay 0.5 2.0 --slow 0.25 7 9

POST /v1/chat/completions answers after a random delay in [min, max] seconds, or for a share of
the calls (--slow) a longer one, beyond the run lease, so a fault lands on calls in flight;
streamed (server-sent events, usage in the last chunk) or not, as asked. Every request is
recorded: the probe marker in its messages (`probe:<id>`), whether it was streamed, and whether
the whole answer was delivered (written while the client was still connected). GET /v1/models
lists the model; GET /_records returns the records as JSON; POST /_reset forgets them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = re.compile(r"probe:([A-Za-z0-9_-]+)")
REPLY = "```python\ndef health() -> dict:\n    return {'ok': True}\n```"
CHUNK_GAP_S = 0.05


class Counter:
    def __init__(self, *, label: str, delay: tuple[float, float], slow: tuple[float, float, float], model: str) -> None:
        self.label = label
        self.delay = delay
        self.slow = slow  # (share of calls, min s, max s): the long tail of real LLM calls
        self.model = model
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.random = random.Random(7)  # noqa: S311 - not for secrets: the same delays on every run of the script

    def record(self, entry: dict) -> None:
        with self.lock:
            self.records.append(entry)

    def next_delay(self) -> float:
        with self.lock:
            share, low, high = self.slow
            return self.random.uniform(low, high) if self.random.random() < share else self.random.uniform(*self.delay)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        counter = self.server.counter
        if self.path.startswith("/_records"):
            with counter.lock:
                self._json(200, list(counter.records))
        elif self.path.startswith("/v1/models"):
            self._json(200, {"object": "list", "data": [{"id": counter.model, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        counter = self.server.counter
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/_reset"):
            with counter.lock:
                counter.records.clear()
            self._json(200, {"ok": True})
            return
        if not self.path.startswith("/v1/chat/completions"):
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        found = MARKER.search(json.dumps(body.get("messages") or []))
        entry = {
            "upstream": counter.label,
            "marker": found.group(1) if found else "",
            "stream": bool(body.get("stream")),
            "client_port": self.client_address[1],
            "received_at": time.time(),
            "delivered": False,
            "finished_at": None,
        }
        counter.record(entry)  # counted on arrival: a call the client gave up on still reached us
        time.sleep(counter.next_delay())
        try:
            if self._peer_gone():
                return
            if entry["stream"]:
                self._stream(body)
            else:
                self._json(200, self._completion(body))
            entry["delivered"] = True
        except OSError:
            self.close_connection = True
        finally:
            entry["finished_at"] = time.time()

    # -- replies -----------------------------------------------------------------------------

    def _usage(self, body: dict) -> dict:
        prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in body.get("messages") or [])
        completion = len(REPLY.split())
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(self, body: dict) -> dict:
        return {
            "id": "chatcmpl-faults",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.server.counter.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
            "usage": self._usage(body),
        }

    def _stream(self, body: dict) -> None:
        base = {
            "id": "chatcmpl-faults",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or self.server.counter.model,
        }
        words = REPLY.split(" ")
        events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        events += [
            {**base, "choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]}
            for i, w in enumerate(words)
        ]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": self._usage(body)})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for data in [*(json.dumps(event) for event in events), "[DONE]"]:
            chunk = f"data: {data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
            time.sleep(CHUNK_GAP_S)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, data: object) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _peer_gone(self) -> bool:
        """True when the client closed its end (a killed worker): a write would still 'succeed'."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    counter: Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--delay", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"))
    parser.add_argument("--slow", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("SHARE", "MIN", "MAX"))
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.counter = Counter(label=args.label, delay=tuple(args.delay), slow=tuple(args.slow), model=args.model)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
