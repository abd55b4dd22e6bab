"""Under ASGI each request's sync work runs in a thread (and an async context) of its own: the web
process must still reuse its connections to Redis and PostgreSQL, not open new ones per request.

Each case runs the project's settings in a fresh interpreter, as a web process does."""

import os
from urllib.parse import urlsplit, urlunsplit

import redis

from tests.project.test_settings import _settings_with
from tests.redis_server import throwaway_redis

__all__ = ["throwaway_redis"]

# 20 "requests", each in a new thread, so each gets Django's cache and database objects anew.
EACH_IN_A_THREAD = """
import json, threading, django
django.setup()
from django.core.cache import cache
from django.db import connection, connections

found = []

def request():
    cache.get("probe")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        found.append(cursor.fetchone()[0])
    connections.close_all()  # what the gateway's worker threads do when they end

for _ in range(20):
    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
print(json.dumps({"backends": len(set(found))}))
"""


def _maintenance_database_url() -> str:
    # The test run's server, its always-present `postgres` database: only pg_backend_pid() is read.
    parts = urlsplit(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres")
    return urlunsplit(parts._replace(path="/postgres"))


def _run(tmp_path, redis_url: str, **overrides: str) -> dict:
    import json

    result = _settings_with(
        tmp_path,
        script=["-c", EACH_IN_A_THREAD],
        DATABASE_URL=_maintenance_database_url(),
        DATABASE_CONN_MAX_AGE="0",
        REDIS_URL=redis_url,
        **overrides,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_requests_in_threads_of_their_own_share_one_redis_connection(tmp_path, throwaway_redis):
    server = redis.Redis.from_url(throwaway_redis.url)
    before = server.info("stats")["total_connections_received"]

    _run(tmp_path, throwaway_redis.url)

    # One for the process (two at most, were two threads to overlap); not one per request.
    assert server.info("stats")["total_connections_received"] - before <= 2


def test_with_a_pool_requests_in_threads_of_their_own_reuse_database_connections(tmp_path, throwaway_redis):
    found = _run(tmp_path, throwaway_redis.url, DATABASE_POOL_SIZE="3")

    assert found["backends"] <= 3  # without the pool: 20, a PostgreSQL connection per request
