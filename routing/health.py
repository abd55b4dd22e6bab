"""Provider health shared by every worker through the Django cache (Redis in production).

Cool-down: a provider that failed transiently `failures_before_cooldown` times in a row is
skipped for `cooldown_seconds`. Permanent failures (a wrong key, an unknown model) never count:
they say nothing about whether the host is up, and the key is read from the environment on
every call, so fixing it takes effect on the next request. A success resets the count.

Slots: `max_in_flight` requests at once per provider, across all workers. Slot i is the cache
key `slot:<provider>:<i>`, taken with `cache.add` (SET NX with an expiry, so a killed worker's
slot frees itself after the request timeout plus a margin) and deleted when the call ends.
On the file cache (one machine, no Redis) `add` is not atomic across processes: two workers
can, rarely, both take the same slot.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.cache import cache

from routing.providers.base import CallCancelled

FAILURES_KEY = "health:failures:{}"
COOLDOWN_KEY = "health:cooldown:{}"
SLOT_KEY = "slot:{}:{}"
SLOT_MARGIN_S = 30.0  # beyond the request timeout, before a dead worker's slot expires
FAILURE_MEMORY_S = 3600  # a run of failures older than this is forgotten
SLOT_POLL_S = (0.02, 0.25)  # first and longest pause between attempts to take a slot
COOLDOWN_CHECK_INTERVAL_S = 1.0  # how stale this process's view of other workers' cool-downs may be


@dataclass(frozen=True)
class Cooldown:
    until: float  # time.time()
    failures: int

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)


def _fetch_cooldowns(names: frozenset[str]) -> dict[str, Cooldown]:
    keys = {COOLDOWN_KEY.format(name): name for name in names}
    found = cache.get_many(list(keys))
    return {keys[key]: Cooldown(until=value[0], failures=value[1]) for key, value in found.items()}


class _CooldownView:
    """This process's copy of the shared cool-downs, refreshed at most every COOLDOWN_CHECK_INTERVAL_S.

    A cool-down this process starts is known here at once; one started by another worker is seen
    within the interval. Expiry needs no refresh: each cool-down carries its end time.
    """

    def __init__(self) -> None:
        self.known: dict[str, Cooldown] = {}
        self.names: frozenset[str] = frozenset()
        self.checked_at = float("-inf")
        self.lock = threading.Lock()

    def get(self, provider_names: Iterable[str]) -> dict[str, Cooldown]:
        names = frozenset(provider_names)
        if names != self.names or time.monotonic() - self.checked_at >= COOLDOWN_CHECK_INTERVAL_S:
            fetched = _fetch_cooldowns(names)
            with self.lock:
                self.known, self.names, self.checked_at = fetched, names, time.monotonic()
        return self.known

    def note(self, provider: str, cooldown: Cooldown) -> None:
        with self.lock:
            self.known = {**self.known, provider: cooldown}


_view = _CooldownView()


def cooldowns(provider_names: Iterable[str]) -> dict[str, Cooldown]:
    """The providers cooling down now (normally from memory; a round trip at most once per interval)."""
    now = time.time()
    return {name: cooldown for name, cooldown in _view.get(provider_names).items() if cooldown.remaining(now) > 0}


def record_success(provider: str) -> None:
    cache.delete(FAILURES_KEY.format(provider))


def record_transient_failure(provider: str, *, failures_before_cooldown: int, cooldown_seconds: int) -> Cooldown | None:
    """Count one more transient failure in a row; start (and return) a cool-down at the limit."""
    key = FAILURES_KEY.format(provider)
    cache.add(key, 0, timeout=FAILURE_MEMORY_S)
    try:
        failures = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=FAILURE_MEMORY_S)
        failures = 1
    if failures < failures_before_cooldown or cooldown_seconds <= 0:
        return None
    cooldown = Cooldown(until=time.time() + cooldown_seconds, failures=failures)
    cache.set(COOLDOWN_KEY.format(provider), (cooldown.until, cooldown.failures), timeout=cooldown_seconds)
    _view.note(provider, cooldown)
    cache.delete(key)  # after the cool-down the provider gets a fresh run of chances
    return cooldown


class NoFreeSlot(Exception):
    pass


@dataclass(frozen=True)
class Slot:
    key: str
    token: str


def try_take_slot(provider: str, *, limit: int, hold_s: float) -> Slot | None:
    token = uuid.uuid4().hex
    timeout = max(1, int(hold_s + SLOT_MARGIN_S + 0.999))
    for index in range(limit):
        key = SLOT_KEY.format(provider, index)
        if cache.add(key, token, timeout=timeout):
            return Slot(key, token)
    return None


def release_slot(slot: Slot) -> None:
    # Only delete our own token: if the slot expired (a call outlived its timeout) and another
    # worker took it, it stays theirs. (get-then-delete is not atomic; the window is tiny and
    # only opens after an expiry the request timeout is there to prevent.)
    if cache.get(slot.key) == slot.token:
        cache.delete(slot.key)


@contextmanager
def slot(
    provider: str, *, limit: int | None, hold_s: float, wait_s: float, cancelled: Callable[[], bool] | None = None
) -> Iterator[Slot | None]:
    """Hold one of the provider's slots for the duration; raise NoFreeSlot after waiting `wait_s`,
    CallCancelled as soon as `cancelled()` says so while waiting."""
    if limit is None:
        yield None
        return
    deadline = time.monotonic() + wait_s
    pause = SLOT_POLL_S[0]
    while (taken := try_take_slot(provider, limit=limit, hold_s=hold_s)) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoFreeSlot(f"{provider} busy: all {limit} slots in use for {wait_s:g} s")
        if cancelled is not None and cancelled():
            raise CallCancelled("cancelled while waiting for a slot")
        time.sleep(min(pause, left))
        pause = min(pause * 2, SLOT_POLL_S[1])
    try:
        yield taken
    finally:
        release_slot(taken)
