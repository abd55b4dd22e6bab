"""Provider health shared by every worker through the Django cache (Redis in production).

Cool-down: a provider that failed transiently `failures_before_cooldown` times in a row is
skipped for `cooldown_seconds`; one that answered with Retry-After is skipped for at least that
long. Permanent failures (a wrong key, an unknown model) never count: they say nothing about
whether the host is up, and the key is read from the environment on every call, so fixing it
takes effect on the next request. A success resets the count.

Slots: `max_in_flight` requests at once per provider, across all workers. Slot i is the cache
key `slot:<provider>:<i>`, taken with `cache.add` (SET NX) for SLOT_TTL_S seconds. While the call
runs, this process's lease thread renews it (as the run heartbeat renews a run's lease), so a
killed worker's slots come back within SLOT_TTL_S; a call stuck past its own timeout stops being
renewed after `hold_s` plus a margin. On the file cache (one machine, no Redis) `add` is not
atomic across processes: two workers can, rarely, both take the same slot.

A call that timed out keeps its slot until the server has closed the connection too (up to a
few seconds, in the background: the caller moves on), since until then the server may still be
working on the request (routing.providers.http.Deadline).

The shared cache is bookkeeping, never a reason to fail a call: while it is unreachable (Redis
down or hung), slots are limited per process, cool-downs are neither read nor written beyond
this process, and each of these is logged. After an error the cache is left alone for
CACHE_RETRY_S rather than costing every call a socket timeout.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from django.core.cache import cache
from django.core.cache.backends.redis import RedisCacheClient

from routing.providers.base import CallCancelled
from routing.providers.deadline import given_up_connections, wait_for_servers_to_close

logger = logging.getLogger(__name__)

FAILURES_KEY = "health:failures:{}"
COOLDOWN_KEY = "health:cooldown:{}"
SLOT_KEY = "slot:{}:{}"
SLOT_TTL_S = 10  # a slot whose holder stopped renewing it (a killed worker) frees itself this soon
SLOT_MARGIN_S = 30.0  # beyond the request timeout, before a stuck call's slot stops being renewed
SLOT_RENEW_TICK_S = 0.5
FAILURE_MEMORY_S = 3600  # a run of failures older than this is forgotten
SLOT_POLL_S = (0.02, 0.25)  # first and longest pause between attempts to take a slot
COOLDOWN_CHECK_INTERVAL_S = 1.0  # how stale this process's view of other workers' cool-downs may be
RETRY_AFTER_MAX_S = 3600  # a provider's Retry-After is honoured up to this long
CACHE_RETRY_S = 5.0  # after a cache error, how long this process works without the cache

T = TypeVar("T")


class _SharedCache:
    """Calls to the shared cache that degrade instead of raising: a failed call is logged, returns
    `default`, and the cache is skipped for CACHE_RETRY_S (a hung Redis costs a socket timeout per call)."""

    def __init__(self) -> None:
        self.down_until = 0.0

    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    def mark_down(self) -> None:
        """Another user of the same cache found it unreachable: skip it for CACHE_RETRY_S."""
        self.down_until = time.monotonic() + CACHE_RETRY_S

    def call(self, what: str, operation: Callable[[], T], default: T) -> T:
        if not self.available():
            return default
        try:
            return operation()
        except Exception as error:  # redis-py, file system: the backends' errors share no base class
            self.down_until = time.monotonic() + CACHE_RETRY_S
            logger.warning(
                "routing health: the shared cache is unreachable (%s: %s): %s", type(error).__name__, error, what
            )
            return default


shared = _SharedCache()


@dataclass(frozen=True)
class Cooldown:
    until: float  # time.time()
    failures: int
    fix: str = ""  # what to do about the failure that started it (routing.readiness), for a run it fails

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)


def _fetch_cooldowns(names: frozenset[str]) -> dict[str, Cooldown]:
    keys = {COOLDOWN_KEY.format(name): name for name in names}
    found = cache.get_many(list(keys))
    return {keys[key]: Cooldown(*value) for key, value in found.items()}


class _CooldownView:
    """This process's copy of the shared cool-downs, refreshed at most every COOLDOWN_CHECK_INTERVAL_S.

    A cool-down this process starts is known here at once; one started by another worker is seen
    within the interval. Expiry needs no refresh: each cool-down carries its end time. While the
    cache is unreachable the copy is kept as it is.
    """

    def __init__(self) -> None:
        self.known: dict[str, Cooldown] = {}
        self.names: frozenset[str] = frozenset()
        self.checked_at = float("-inf")
        self.lock = threading.Lock()

    def get(self, provider_names: Iterable[str]) -> dict[str, Cooldown]:
        names = frozenset(provider_names)
        if names != self.names or time.monotonic() - self.checked_at >= COOLDOWN_CHECK_INTERVAL_S:
            fetched = shared.call("cool-downs not refreshed", lambda: _fetch_cooldowns(names), None)
            with self.lock:
                if fetched is not None:
                    self.known, self.names = fetched, names
                self.checked_at = time.monotonic()
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
    shared.call(f"{provider}'s failure count not reset", lambda: cache.delete(FAILURES_KEY.format(provider)), None)


def _count_failure(provider: str) -> int:
    key = FAILURES_KEY.format(provider)
    cache.add(key, 0, timeout=FAILURE_MEMORY_S)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=FAILURE_MEMORY_S)
        return 1


def record_transient_failure(
    provider: str,
    *,
    failures_before_cooldown: int,
    cooldown_seconds: int,
    retry_after: float | None = None,
    fix: str = "",
) -> Cooldown | None:
    """Count one more transient failure in a row; start (and return) a cool-down at the limit, or
    at once when the provider said how long to wait (Retry-After), for at least that long."""
    failures = shared.call(f"{provider}'s failure not counted", lambda: _count_failure(provider), 0)
    seconds = cooldown_seconds if failures >= failures_before_cooldown and cooldown_seconds > 0 else 0
    if retry_after:
        seconds = max(seconds, min(retry_after, RETRY_AFTER_MAX_S))
    if seconds <= 0:
        return None
    cooldown = Cooldown(until=time.time() + seconds, failures=max(failures, 1), fix=fix)

    def publish() -> None:
        value = (cooldown.until, cooldown.failures, cooldown.fix)
        cache.set(COOLDOWN_KEY.format(provider), value, timeout=math.ceil(seconds))
        cache.delete(FAILURES_KEY.format(provider))  # after the cool-down the provider gets a fresh run of chances

    _view.note(provider, cooldown)  # this process honours it even when the others cannot be told
    shared.call(f"{provider}'s cool-down kept to this process", publish, None)
    return cooldown


class NoFreeSlot(Exception):
    pass


@dataclass(frozen=True)
class Slot:
    key: str
    token: str
    local: bool = False  # taken from this process's own limit while the shared cache was unreachable


def try_take_slot(provider: str, *, limit: int) -> Slot | None:
    """Take a free shared slot for SLOT_TTL_S (renew it with `slot()`); raises when the cache does."""
    token = uuid.uuid4().hex
    # From a random slot on: the calls in flight hold the first ones, and asking each of them in
    # turn cost a round trip to Redis per call in flight (a provider with a high max_in_flight).
    first = random.randrange(limit)  # noqa: S311 (spreading the load, not a secret)
    for step in range(limit):
        key = SLOT_KEY.format(provider, (first + step) % limit)
        if cache.add(key, token, timeout=SLOT_TTL_S):
            return Slot(key, token)
    return None


# Deletes the slot only while it holds our token, in one round trip (KEYS[1] the slot, ARGV[1] our token).
_RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _release_shared(slot: Slot) -> None:
    # Only delete our own token: if the slot expired (its renewal failed) and another worker took
    # it, it stays theirs.
    client = getattr(cache, "_cache", None)
    if isinstance(client, RedisCacheClient):  # compared and deleted in Redis: one round trip, atomic
        key = cache.make_and_validate_key(slot.key)
        token = client._serializer.dumps(slot.token)  # the bytes cache.add stored
        client.get_client(key, write=True).eval(_RELEASE_SCRIPT, 1, key, token)
    elif cache.get(slot.key) == slot.token:  # the file cache (one machine): get, then delete
        cache.delete(slot.key)


def release_slot(slot: Slot) -> None:
    _leases.drop(slot)
    if slot.local:
        _local_slots.release(slot)
    else:
        shared.call(f"{slot.key} left to expire", lambda: _release_shared(slot), None)


class _LocalSlots:
    """Each provider's limit applied to this process alone, while the shared cache is unreachable."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.used: dict[str, int] = {}

    def try_take(self, provider: str, *, limit: int) -> Slot | None:
        with self.lock:
            used = self.used.get(provider, 0)
            if used >= limit:
                return None
            self.used[provider] = used + 1
        return Slot(SLOT_KEY.format(provider, "local"), uuid.uuid4().hex, local=True)

    def release(self, slot: Slot) -> None:
        provider = slot.key.split(":")[1]
        with self.lock:
            self.used[provider] = max(0, self.used.get(provider, 0) - 1)


_local_slots = _LocalSlots()


class _SlotLeases:
    """One thread per process renews the shared slots its calls hold, every SLOT_TTL_S / 3.

    A slot outlives its holder by at most SLOT_TTL_S: a worker killed mid-call stops renewing. A
    forked pool process starts its own thread on first use (threads do not survive fork).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[Slot, tuple[float, float]] = {}  # slot -> (renew until, last renewed), monotonic
        self.pid: int | None = None

    def add(self, slot: Slot, *, hold_s: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.held[slot] = (now + hold_s + SLOT_MARGIN_S, now)
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(target=self._run, name="slot-leases", daemon=True).start()

    def drop(self, slot: Slot) -> None:
        with self.lock:
            self.held.pop(slot, None)

    def _run(self) -> None:
        while True:
            time.sleep(SLOT_RENEW_TICK_S)
            self.renew()

    def renew(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = [slot for slot, (until, last) in self.held.items() if now < until and now - last >= SLOT_TTL_S / 3]
            for slot in due:
                self.held[slot] = (self.held[slot][0], now)
        for slot in due:
            shared.call(f"{slot.key} not renewed", lambda slot=slot: _renew(slot), None)


def _renew(slot: Slot) -> None:
    if cache.get(slot.key) == slot.token:
        cache.touch(slot.key, SLOT_TTL_S)


_leases = _SlotLeases()


def _take(provider: str, *, limit: int) -> Slot | None:
    if shared.available():
        try:
            return try_take_slot(provider, limit=limit)
        except Exception as error:  # see _SharedCache.call
            shared.down_until = time.monotonic() + CACHE_RETRY_S
            logger.warning(
                "routing health: the shared cache is unreachable (%s: %s): %s limited per process",
                type(error).__name__,
                error,
                provider,
            )
    return _local_slots.try_take(provider, limit=limit)


@contextmanager
def slot(
    provider: str, *, limit: int | None, hold_s: float, wait_s: float, cancelled: Callable[[], bool] | None = None
) -> Iterator[Slot | None]:
    """Hold one of the provider's slots for the duration (renewed for up to `hold_s` plus a margin);
    raise NoFreeSlot after waiting `wait_s`, CallCancelled as soon as `cancelled()` says so while waiting."""
    if limit is None:
        yield None
        return
    deadline = time.monotonic() + wait_s
    pause = SLOT_POLL_S[0]
    while (taken := _take(provider, limit=limit)) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoFreeSlot(f"{provider} busy: all {limit} slots in use for {wait_s:g} s")
        if cancelled is not None and cancelled():
            raise CallCancelled("cancelled while waiting for a slot")
        time.sleep(min(pause, left))
        pause = min(pause * 2, SLOT_POLL_S[1])
    if not taken.local:
        _leases.add(taken, hold_s=hold_s)
    with given_up_connections() as given_up:
        try:
            yield taken
        finally:
            if given_up:  # a call timed out: its slot stays taken until the server lets go of the request
                threading.Thread(target=_release_after_close, args=(taken, given_up), daemon=True).start()
            else:
                release_slot(taken)


def _release_after_close(taken: Slot, given_up: list) -> None:
    try:
        wait_for_servers_to_close(given_up)
    finally:
        release_slot(taken)
