"""A hard deadline for one HTTP exchange, and holding its slot until the server has let go.

httpx's timeouts bound each read, not the whole call: a body that trickles in, or a stream that
keeps sending, would run on. `Deadline` ends the exchange at its time whatever the server does.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar

import httpx

from routing.providers.base import TransientError

SERVER_CLOSE_WAIT_MAX_S = 5.0  # after a timeout, the longest a slot waits for the server to let go
SERVER_CLOSE_POLL_S = 0.01
TCP_STATES_AWAITING_SERVER = frozenset({1, 4, 5})  # Linux tcp_states.h: ESTABLISHED, FIN_WAIT1, FIN_WAIT2

logger = logging.getLogger(__name__)


class _Alarm:
    __slots__ = ("action", "at", "cancelled")

    def __init__(self, at: float, action: Callable[[], None]) -> None:
        self.at = at
        self.action = action
        self.cancelled = False


class _Watchdog:
    """One thread per process that fires the deadlines' alarms in time order.

    Starting a `threading.Timer` per alarm (two per call) cost a thread start and stop on every
    call; almost every alarm is cancelled long before it is due, so a cancelled one only gets a
    flag and the heap is compacted when cancelled alarms make up most of it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def alarm_set(self, *, at: float, action: Callable[[], None]) -> _Alarm:
        alarm = _Alarm(at, action)
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is alarm:
                self._cond.notify()  # earlier than what the thread sleeps towards
        return alarm

    def alarm_cancel(self, *, alarm: _Alarm) -> None:
        with self._cond:
            if alarm.cancelled:
                return
            alarm.cancelled = True
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        self._cancelled -= 1
                    if not self._heap:
                        self._cond.wait()
                        continue
                    left = self._heap[0][0] - time.monotonic()
                    if left <= 0:
                        alarm = heapq.heappop(self._heap)[2]
                        alarm.cancelled = True  # fired: a later cancel is a no-op
                        break
                    self._cond.wait(left)
            try:
                alarm.action()
            except Exception:  # one alarm's failure must not stop the others
                logger.exception("deadline alarm failed")

    def reset_after_fork(self) -> None:
        # A forked child (a Celery pool process) has no watchdog thread and may have inherited a
        # lock held by the parent's: it starts afresh.
        self.__init__()


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog.reset_after_fork)


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
        alarms = [
            _watchdog.alarm_set(at=self.at, action=self._give_up),
            _watchdog.alarm_set(at=self.at + self.WAKE_GRACE_S, action=self._wake),
        ]
        try:
            yield
        finally:
            with self._lock:
                self._done = True  # from here the connection may go back to the pool: never cut it
            for alarm in alarms:
                _watchdog.alarm_cancel(alarm=alarm)

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
