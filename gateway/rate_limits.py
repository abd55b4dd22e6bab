"""Requests and tokens per minute per API key and per team, held across every web process in Redis.

Each key has two buckets that empty continuously: a request fills the requests bucket by one and
the tokens bucket by the tokens it may use, and each drains at its limit per minute. A request
fits when both buckets have room for it; then a burst of a whole minute's limit is allowed, after
which requests are admitted as fast as the limit refills (OpenAI's limits behave so, and its
`x-ratelimit-reset-*` headers say when a bucket is back to its initial state, i.e. empty).

A team with limits (accounts.Team) has two such buckets too, shared by every key and older token of
its members: a member's request must fit in its key's buckets and its team's, is counted in both or
in neither, and is settled in both. A refusal names the limit that refused (the one that makes the
request wait longest, when both do); the headers show, per kind, the tighter of the two (the one
with less remaining), as OpenAI's show the one limit a request meets first.

Tokens are held at admission and corrected after the call, as OpenAI does: a request holds its
estimated prompt (routing.tokens, the router's own estimate) plus the completion it may ask for
(`max_tokens`, or UNSTATED_COMPLETION_TOKENS when it gives none), since what it will use is known
only after the call; `rate_settle` then replaces the hold by the tokens the ledger metered for it
(every attempt's prompt and completion: what the upstreams processed for this client). Holding
the worst case is what stops a burst of concurrent long requests from all fitting; the correction
is what stops a chatty client with a generous `max_tokens` from being refused for tokens it never
used.

One Lua script does the whole check and update atomically in Redis, on Redis's clock (so the
processes' clocks need not agree), in one round trip, the team's buckets included (a second key of
the same call: one Redis, not a cluster, where the two keys could be in different slots). The
`limits` package (maintained, and atomic per limit) was considered: it has no continuous-refill
bucket, checks one limit per call (two limits, two round trips and a request counted even when its
tokens are then refused), cannot hand back tokens held, and reads remaining/reset in a further call
per limit.

Redis unreachable: the limits are not enforced (fail open), logged once when it goes and once when
it is back, and Redis is left alone for REDIS_RETRY_S after an error, so a hung Redis costs a
request a socket timeout at most that often per process. Rate limits share the fate of the other
bookkeeping Redis holds (routing.health: slots and cool-downs degrade, never fail a call): the
team's LLM endpoint stays up, cloud spend is still capped by the budgets (PostgreSQL) and the
shared host by its in-flight slots. Without REDIS_URL (one machine, no Redis) they are off.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

import redis
from django.conf import settings

from accounts.services import KeyHolder
from core.redis_pool import SharedConnectionPool

logger = logging.getLogger(__name__)

UNSTATED_COMPLETION_TOKENS = 1024  # held for the answer of a request that sets no max_tokens, until settled
REDIS_RETRY_S = 5.0  # after a Redis error, how long this process admits without asking Redis
REDIS_TIMEOUT_S = 1.0  # connect and read: a hung Redis must not hold a request longer
KEY_FORMAT = "ratelimit:{}"  # "key:<id>", "token:<user id>", "team:<id>"
WINDOW_MS = 60_000

# KEYS: the bucket pairs a request must fit in, its key's then its team's (each a hash: r = requests in
# the bucket, t = tokens, at = ms of the last change). ARGV: requests to add, tokens to add (negative:
# a settlement giving back what was held), "1" if they must fit in every pair (admission) or "0" (a
# settlement, which always applies), then each pair's requests and tokens per minute (0: not
# limited). Nothing is written unless the request fits in every pair. Returns {the pair that refused
# (1-based; 0: none; the one that makes it wait longest), what it refused (1 requests, 2 tokens, 3
# both), ms until it would fit in every pair}, then for each pair {requests remaining, tokens
# remaining, ms until each bucket is empty}.
SCRIPT = """
local add_r, add_t, must_fit = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == "1"
local clock = redis.call("TIME")
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local levels = {}
local refused_at, refused, wait = 0, 0, 0
for i, key in ipairs(KEYS) do
  local rpm, tpm = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local saved = redis.call("HMGET", key, "r", "t", "at")
  local elapsed = math.max(0, now - (tonumber(saved[3]) or now))
  local r, t = 0, 0
  if rpm > 0 then r = math.max(0, (tonumber(saved[1]) or 0) - elapsed * rpm / 60000) end
  if tpm > 0 then t = math.max(0, (tonumber(saved[2]) or 0) - elapsed * tpm / 60000) end
  if must_fit then
    local over, over_wait = 0, 0
    if rpm > 0 and r + add_r > rpm then
      over = 1
      over_wait = (r + add_r - rpm) * 60000 / rpm
    end
    if tpm > 0 and t + add_t > tpm then
      over = over + 2
      over_wait = math.max(over_wait, (t + add_t - tpm) * 60000 / tpm)
    end
    if over > 0 and (refused_at == 0 or over_wait > wait) then
      refused_at, refused, wait = i, over, over_wait
    end
  end
  levels[i] = {rpm, tpm, r, t}
end
local answer = {refused_at, refused, math.ceil(wait)}
for i, key in ipairs(KEYS) do
  local rpm, tpm, r, t = unpack(levels[i])
  if refused_at == 0 then
    if rpm > 0 then r = r + add_r end
    if tpm > 0 then t = math.max(0, t + add_t) end
  end
  local empty_r, empty_t = 0, 0
  if rpm > 0 then empty_r = r * 60000 / rpm end
  if tpm > 0 then empty_t = t * 60000 / tpm end
  if refused_at == 0 then
    redis.call("HSET", key, "r", tostring(r), "t", tostring(t), "at", now)
    redis.call("PEXPIRE", key, math.ceil(math.max(empty_r, empty_t)) + 1000)
  end
  table.insert(answer, math.floor(rpm - r))
  table.insert(answer, math.floor(tpm - t))
  table.insert(answer, math.ceil(empty_r))
  table.insert(answer, math.ceil(empty_t))
end
return answer
"""


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int  # 0: not limited
    tokens_per_minute: int  # 0: not limited

    @property
    def enforced(self) -> bool:
        return self.requests_per_minute > 0 or self.tokens_per_minute > 0


@dataclass(frozen=True)
class Scope:
    """A pair of buckets a request must fit in: its key's (an older token's: its user's), or its team's."""

    kind: Literal["key", "team"]
    name: str  # as a refusal names it: "this API key", "team platform"
    bucket: str  # the Redis key
    limits: Limits


@dataclass(frozen=True)
class RateState:
    """Where a key (or a team) stands after a request: what its response headers say."""

    limits: Limits
    remaining_requests: int
    remaining_tokens: int
    reset_requests_ms: int  # until the bucket is empty again (OpenAI: "resets to its initial state")
    reset_tokens_ms: int

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers, for each limit the key has."""
        headers: dict[str, str] = {}
        for kind, limit, remaining, reset_ms in (
            ("requests", self.limits.requests_per_minute, self.remaining_requests, self.reset_requests_ms),
            ("tokens", self.limits.tokens_per_minute, self.remaining_tokens, self.reset_tokens_ms),
        ):
            if limit > 0:
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, remaining))
                headers[f"x-ratelimit-reset-{kind}"] = duration(reset_ms)
        return headers


def tighter(states: tuple[RateState, ...]) -> RateState:
    """Per kind, the state of the limit with less remaining (then the one that empties later; then the
    key's): what the headers show of a key and its team, as OpenAI's show the limit met first."""

    def requests_left(state: RateState) -> tuple[bool, int, int]:
        return not state.limits.requests_per_minute, state.remaining_requests, -state.reset_requests_ms

    def tokens_left(state: RateState) -> tuple[bool, int, int]:
        return not state.limits.tokens_per_minute, state.remaining_tokens, -state.reset_tokens_ms

    requests, tokens = min(states, key=requests_left), min(states, key=tokens_left)
    return RateState(
        Limits(requests.limits.requests_per_minute, tokens.limits.tokens_per_minute),
        remaining_requests=requests.remaining_requests,
        remaining_tokens=tokens.remaining_tokens,
        reset_requests_ms=requests.reset_requests_ms,
        reset_tokens_ms=tokens.reset_tokens_ms,
    )


class RateLimited(Exception):
    """A request over its key's or its team's limit (a 429): `scope` says whose, `kind` which limit,
    `retry_after_ms` when it would fit (None: never, it is larger than the whole limit)."""

    def __init__(
        self,
        message: str,
        *,
        scope: Literal["key", "team"],
        kind: Literal["requests", "tokens"],
        retry_after_ms: int | None,
        state: RateState | None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.scope = scope
        self.kind = kind
        self.retry_after_ms = retry_after_ms
        self.state = state

    def headers(self) -> dict[str, str]:
        """Retry-After (whole seconds, rounded up) and retry-after-ms (which the openai client prefers),
        with the x-ratelimit-* headers."""
        headers = self.state.headers() if self.state else {}
        if self.retry_after_ms is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_ms / 1000)))
            headers["retry-after-ms"] = str(max(1, self.retry_after_ms))
        else:  # too large to ever fit: the openai client would retry a 429 twice for nothing
            headers["x-should-retry"] = "false"
        return headers


@dataclass
class Admission:
    """A request let in: the tokens it holds until `rate_settle`, and where its key and team stand (as
    of the admission, then of the settlement)."""

    scopes: tuple[Scope, ...]  # the limited ones it counts in, the key's first; empty: none
    held_tokens: int
    states: tuple[RateState, ...] | None  # each scope's; None: not enforced (no limit, or Redis unreachable)

    @property
    def state(self) -> RateState | None:
        """Per kind, the tighter of its key's and its team's."""
        return tighter(self.states) if self.states else None

    def headers(self) -> dict[str, str]:
        state = self.state
        return state.headers() if state else {}


def duration(ms: int) -> str:
    """A duration as OpenAI's reset headers write it (Go's): "0s", "120ms", "1s", "6m0s", "1m30.5s"."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{seconds}s"


def holder_limits(holder: KeyHolder) -> Limits:
    """The key's own limits where set, else the server's defaults (SWITCHYARD_KEY_RPM / _TPM)."""
    if holder.key is None:  # an older DRF token
        return Limits(settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM)
    return Limits(*holder.key.rate_limits())


def rate_scopes(holder: KeyHolder) -> tuple[Scope, ...]:
    """The limited bucket pairs a request of the holder counts in: its key's, then its team's (a team's
    empty limit: none). The team comes with the holder (key_authenticate selects it): no query."""
    # An older DRF token (no key row) has one bucket per user: a user has at most one such token.
    own = f"key:{holder.key.pk}" if holder.key is not None else f"token:{holder.user.pk}"
    scopes = [Scope("key", "this API key", KEY_FORMAT.format(own), holder_limits(holder))]
    team = holder.team
    if team is not None:
        limits = Limits(team.requests_per_minute or 0, team.tokens_per_minute or 0)
        scopes.append(Scope("team", f"team {team.name}", KEY_FORMAT.format(f"team:{team.pk}"), limits))
    return tuple(scope for scope in scopes if scope.limits.enforced)


class _Redis:
    """The limiter's Redis: the script, registered per URL, and whether Redis is being trusted now.
    An error marks it unreachable for REDIS_RETRY_S; the change is logged, not each failed request."""

    def __init__(self) -> None:
        self.scripts: dict[str, redis.commands.core.Script] = {}
        self.down_until = 0.0
        self.down = False  # logged as down and not yet seen back
        self.lock = threading.Lock()

    def script(self) -> redis.commands.core.Script | None:
        url = settings.REDIS_URL
        if not url:
            self._went_down("REDIS_URL is not set")
            return None
        if time.monotonic() < self.down_until:
            return None
        with self.lock:
            if url not in self.scripts:
                pool = SharedConnectionPool.from_url(
                    url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
                )
                self.scripts[url] = redis.Redis(connection_pool=pool).register_script(SCRIPT)
            return self.scripts[url]

    def run(
        self, scopes: tuple[Scope, ...], *, requests: int, tokens: int, must_fit: bool
    ) -> tuple[list[int], tuple[RateState, ...]] | None:
        """The script's verdict (refused pair, what, wait) and each scope's state, in one round trip;
        None when Redis cannot be asked (the limits are not enforced)."""
        script = self.script()
        if script is None:
            return None
        args = [requests, tokens, int(must_fit)]
        for scope in scopes:
            args += [scope.limits.requests_per_minute, scope.limits.tokens_per_minute]
        try:
            answer = [int(value) for value in script(keys=[scope.bucket for scope in scopes], args=args)]
        except (redis.RedisError, OSError) as error:
            self.down_until = time.monotonic() + REDIS_RETRY_S
            self._went_down(f"{type(error).__name__}: {error}")
            return None
        if self.down:
            self.down = False
            logger.warning("rate limits: Redis answers again; the limits are enforced again")
        states = tuple(RateState(scope.limits, *answer[3 + 4 * i : 7 + 4 * i]) for i, scope in enumerate(scopes))
        return answer[:3], states

    def _went_down(self, why: str) -> None:
        if not self.down:
            self.down = True
            logger.warning("rate limits: not enforced while Redis is unreachable (%s)", why)


_redis = _Redis()


def tokens_to_hold(*, prompt_tokens: int, max_tokens: int | None) -> int:
    """What a request holds of its key's (and team's) tokens per minute until it is settled: its
    estimated prompt and the completion it may ask for."""
    return prompt_tokens + (UNSTATED_COMPLETION_TOKENS if max_tokens is None else max_tokens)


def rate_admit(holder: KeyHolder, *, prompt_tokens: int, max_tokens: int | None) -> Admission:
    """Count one request of the key (and of its team, if limited) and hold its tokens, or raise
    RateLimited (nothing counted anywhere).

    Every gateway endpoint calls this once per request, after the key check and before the call
    (prompt_tokens: routing.tokens' estimate of what it sends; max_tokens: what it asks for at most,
    0 for embeddings), then `rate_settle` when the call is over."""
    scopes = rate_scopes(holder)
    held = tokens_to_hold(prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    if not scopes:
        return Admission(scopes=scopes, held_tokens=held, states=None)
    for scope in scopes:
        if 0 < scope.limits.tokens_per_minute < held:
            raise RateLimited(
                f"Request too large for {scope.name}'s tokens per minute: limit {scope.limits.tokens_per_minute}, "
                f"requested {held} (the estimated prompt and max_tokens, {UNSTATED_COMPLETION_TOKENS} when not "
                "given). Lower max_tokens or shorten the messages, or ask for a higher limit.",
                scope=scope.kind,
                kind="tokens",
                retry_after_ms=None,
                state=None,
            )
    ran = _redis.run(scopes, requests=1, tokens=held, must_fit=True)
    if ran is None:
        return Admission(scopes=scopes, held_tokens=held, states=None)
    (refused_at, refused, wait_ms), states = ran
    if refused_at:
        scope = scopes[refused_at - 1]
        kind: Literal["requests", "tokens"] = "requests" if refused & 1 else "tokens"
        limit = scope.limits.requests_per_minute if kind == "requests" else scope.limits.tokens_per_minute
        asked = "" if kind == "requests" else f", requested {held}"
        shared = " (shared by its members' keys)" if scope.kind == "team" else ""
        raise RateLimited(
            f"Rate limit reached for {scope.name} on {kind} per minute: limit {limit}{asked}{shared}. "
            f"Please try again in {duration(wait_ms)}.",
            scope=scope.kind,
            kind=kind,
            retry_after_ms=wait_ms,
            state=tighter(states),
        )
    return Admission(scopes=scopes, held_tokens=held, states=states)


def rate_settle(admission: Admission, *, tokens_used: int) -> None:
    """Replace the request's hold by the tokens it used (more or fewer), once, in its key's and its
    team's buckets alike (one round trip); `admission.state` then says where it stands."""
    held, admission.held_tokens = admission.held_tokens, tokens_used
    if admission.states is None or tokens_used == held:
        return
    if not any(scope.limits.tokens_per_minute for scope in admission.scopes):
        return
    ran = _redis.run(admission.scopes, requests=0, tokens=tokens_used - held, must_fit=False)
    if ran is not None:
        admission.states = ran[1]
