"""One Redis connection pool per server and options for the whole process.

Django keeps a cache object per async context, and under ASGI every request is one: with Django's
own pool class each request made a new pool and so a new connection to Redis (connect, HELLO,
CLIENT SETINFO) for its first cache call. Pools are thread-safe and redis-py renews them after a
fork, so the process can share them (settings.CACHES' `pool_class`).
"""

from __future__ import annotations

import threading
from typing import Any

import redis

_pools: dict[tuple[str, tuple[tuple[str, Any], ...]], redis.ConnectionPool] = {}
_lock = threading.Lock()


class SharedConnectionPool(redis.ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:
        key = (url, tuple(sorted(options.items(), key=lambda item: item[0])))
        with _lock:
            if key not in _pools:
                _pools[key] = super().from_url(url, **options)
            return _pools[key]
