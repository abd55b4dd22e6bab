"""One Redis client per server and options for the whole process.

Django keeps a cache object per async context, and under ASGI every request is one: with Django's
own classes each request made a new pool and so a new connection to Redis (connect, HELLO,
CLIENT SETINFO) for its first cache call, and every cache call built a new `redis.Redis` (its
response callbacks, about 40 µs). Pools and clients are thread-safe and redis-py renews a pool's
connections after a fork, so the process can share them (settings.CACHES: `RedisCache` as the
backend, `SharedConnectionPool` as its pool class).
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property

_pools: dict[tuple[str, tuple[tuple[str, Any], ...]], redis.ConnectionPool] = {}
_clients: dict[tuple[tuple[str, ...], str], SharedClient] = {}
_lock = threading.RLock()  # SharedClient.get_client holds it while SharedConnectionPool.from_url takes it


class SharedConnectionPool(redis.ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:
        key = (url, tuple(sorted(options.items(), key=lambda item: item[0])))
        with _lock:
            if key not in _pools:
                _pools[key] = super().from_url(url, **options)
            return _pools[key]


class SharedClient(RedisCacheClient):
    """Django's client, keeping one `redis.Redis` per server instead of making one per call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, redis.Redis] = {}

    def get_client(self, key: str | None = None, *, write: bool = False) -> redis.Redis:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            with _lock:
                if index not in self._pools:
                    self._pools[index] = self._pool_class.from_url(self._servers[index], **self._pool_options)
                client = self._clients.setdefault(index, self._client(connection_pool=self._pools[index]))
        return client


class RedisCache(DjangoRedisCache):
    """Django's Redis cache with the process's one client for its servers and options."""

    @cached_property
    def _cache(self) -> SharedClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
        if client is None:
            client = SharedClient(self._servers, **self._options)
            with _lock:
                client = _clients.setdefault(key, client)
        return client
