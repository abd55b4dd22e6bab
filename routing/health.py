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

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.cache import cache

FAILURES_KEY = "health:failures:{}"
COOLDOWN_KEY = "health:cooldown:{}"
SLOT_KEY = "slot:{}:{}"
SLOT_MARGIN_S = 30.0  # beyond the request timeout, before a dead worker's slot expires
FAILURE_MEMORY_S = 3600  # a run of failures older than this is forgotten
SLOT_POLL_S = (0.02, 0.25)  # first and longest pause between attempts to take a slot


@dataclass(frozen=True)
class Cooldown:
    until: float  # time.time()
    failures: int

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)


def cooldowns(provider_names: Iterable[str]) -> dict[str, Cooldown]:
    """The providers cooling down now (one round trip)."""
    keys = {COOLDOWN_KEY.format(name): name for name in provider_names}
    found = cache.get_many(list(keys))
    now = time.time()
    result = {}
    for key, value in found.items():
        cooldown = Cooldown(until=value[0], failures=value[1])
        if cooldown.remaining(now) > 0:
            result[keys[key]] = cooldown
    return result


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
    cache.delete(key)  # after the cool-down the provider gets a fresh run of chances
    return cooldown


def clear(provider: str) -> None:
    cache.delete_many([FAILURES_KEY.format(provider), COOLDOWN_KEY.format(provider)])


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
def slot(provider: str, *, limit: int | None, hold_s: float, wait_s: float) -> Iterator[Slot | None]:
    """Hold one of the provider's slots for the duration; raise NoFreeSlot after waiting `wait_s`."""
    if limit is None:
        yield None
        return
    deadline = time.monotonic() + wait_s
    pause = SLOT_POLL_S[0]
    while (taken := try_take_slot(provider, limit=limit, hold_s=hold_s)) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoFreeSlot(f"{provider} busy: all {limit} slots in use for {wait_s:g} s")
        time.sleep(min(pause, left))
        pause = min(pause * 2, SLOT_POLL_S[1])
    try:
        yield taken
    finally:
        release_slot(taken)
