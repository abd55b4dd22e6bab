"""A loopback server that replays one exact HTTP response, byte for byte, cut into chosen pieces.

The protocol fakes build well-formed bodies; this one is for what a real upstream sends that our
fakes would not: raw UTF-8 with U+2028 inside JSON, chunk boundaries in the middle of a character or
of a CRLF, a body that trickles in, a stream that never ends.

    with ReplayServer(status=200, pieces=[b'{"a":', b' 1}'], gap=0.5) as server:
        httpx.get(server.url)   # the two pieces arrive half a second apart
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ReplayServer:
    def __init__(
        self,
        *,
        pieces: Iterable[bytes],
        status: int = 200,
        headers: dict[str, str] | None = None,
        gap: float = 0.0,
        content_type: str = "application/json",
        chunked: bool = True,
    ) -> None:
        self.pieces = list(pieces)
        self.status = status
        self.headers = headers or {}
        self.gap = gap
        self.content_type = content_type
        self.chunked = chunked
        self.requests = 0
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.replay = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def odd_pieces(body: bytes, sizes: tuple[int, ...] = (1, 3, 2, 7, 5, 4, 11)) -> list[bytes]:
    """The body cut at uneven places, through multi-byte characters and CRLFs alike."""
    pieces, start, index = [], 0, 0
    while start < len(body):
        size = sizes[index % len(sizes)]
        pieces.append(body[start : start + size])
        start, index = start + size, index + 1
    return pieces


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._replay()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._replay()

    def _replay(self) -> None:
        replay: ReplayServer = self.server.replay  # type: ignore[attr-defined]
        replay.requests += 1
        self.send_response(replay.status)
        self.send_header("Content-Type", replay.content_type)
        for name, value in replay.headers.items():
            self.send_header(name, value)
        if replay.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(sum(map(len, replay.pieces))))
        self.end_headers()
        try:
            for index, piece in enumerate(replay.pieces):
                if index and replay.gap and replay.stopping.wait(replay.gap):
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if replay.chunked else piece)
                self.wfile.flush()
            if replay.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its deadline): nothing more to send
