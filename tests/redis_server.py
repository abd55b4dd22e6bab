"""A throw-away redis-server for tests that stop or hang Redis (never the shared one other tests use).

    from tests.redis_server import throwaway_redis   # a fixture; list it in __all__ or use it

    def test_it(throwaway_redis):
        throwaway_redis.url          # redis://127.0.0.1:<port>/0
        throwaway_redis.pause()      # SIGSTOP: connections are accepted, nothing is answered (hung)
        throwaway_redis.resume()     # SIGCONT
        throwaway_redis.stop()       # gone: connections are refused

No persistence, in a temporary directory; stopped (and resumed first, if paused) after the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [*command, "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would not act on SIGKILL's cleanup until continued
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: these tests stop and hang a Redis of their own")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
