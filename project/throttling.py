"""The API's rate limits, failing open when the cache that counts them is unreachable.

DRF counts requests in the Django cache (Redis in a team deployment). A Redis outage must not turn
every API call into a 500: a submit still answers 201 with its run queued (the sweeper enqueues it
once the broker is back), so while the counter cannot be read the request is let through and the
outage logged. The outage is remembered for a few seconds (`routing.health.shared`, which the
router's own cache calls share), so a hung Redis costs one socket timeout, not one per request.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rest_framework import throttling
from rest_framework.request import Request

from routing.health import shared

logger = logging.getLogger(__name__)


class _FailOpen:
    def allow_request(self, request: Request, view: object) -> bool:
        if not shared.available():
            return True
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except (RedisError, OSError) as error:
            shared.mark_down()
            logger.warning("API throttle skipped: its cache is unreachable (%s)", type(error).__name__)
            return True


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass
