"""The API's rate limits (REST_FRAMEWORK's throttles), counted in the default cache: in Redis
wherever one is configured (settings.CACHES), so every web process counts the same requests
and N processes allow what one does. Each request is counted by one script that Redis runs
alone, so two processes never both take the last place in a window.

When Redis does not answer, each process counts in its own memory until it does (N processes
then allow N times the rate: bounded, not unlimited), Redis is asked again after
RETRY_REDIS_AFTER_S rather than at every request (a partition would cost each request the
connect timeout), and a warning is logged once a minute. A rate limit guards capacity, not
access (the login lockout is in the database), and a Redis outage must not turn every API
call into an error. Without Redis (a plain `manage.py runserver`, unit tests) DRF counts in
the process's own memory."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, cast

from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError
from rest_framework import throttling

logger = logging.getLogger(__name__)

# DRF's sliding window: the requests of the last `window` seconds, as members of a sorted set
# scored by their time. Drop the expired, then count this request if there is room. Returns
# "0" when it is allowed, else the time of the oldest request counted (a string: Redis would
# cut a Lua number to an integer).
_WINDOW = """
local key, now, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < tonumber(ARGV[3]) then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('EXPIRE', key, math.ceil(window))
  return '0'
end
return redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
"""
WARN_EVERY_S = 60.0
RETRY_REDIS_AFTER_S = 5.0
_last_warning = -WARN_EVERY_S
_redis_down_until = 0.0  # time.monotonic() before which Redis is not asked again
# Where this process counts while Redis does not answer.
_IN_PROCESS = LocMemCache(
    "chestnet-throttles-while-redis-is-down", {"OPTIONS": {"MAX_ENTRIES": 10_000}}
)


class _CountedInRedis(throttling.SimpleRateThrottle):
    in_redis = False
    oldest: float | None = None  # of the requests counted, when this one is refused

    def allow_request(self, request: Any, view: Any) -> bool:
        cache = caches["default"]
        if self.rate is None or not isinstance(cache, RedisCache):
            return super().allow_request(request, view)
        if time.monotonic() < _redis_down_until:
            return self._allow_in_process(request, view)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        key = cache.make_and_validate_key(self.key)
        arguments = (self.now, self.duration, self.num_requests, f"{self.now}:{uuid.uuid4().hex}")
        try:
            oldest = _count_in_redis(cache, key, arguments)
        except RedisError:
            _redis_down()
            return self._allow_in_process(request, view)
        self.in_redis, self.oldest = True, float(oldest) or None
        return self.oldest is None

    def _allow_in_process(self, request: Any, view: Any) -> bool:
        self.cache = _IN_PROCESS  # DRF's own window, in this process's memory
        return super().allow_request(request, view)

    def wait(self) -> float | None:
        if not self.in_redis:
            return super().wait()
        return None if self.oldest is None else max(self.oldest + self.duration - self.now, 1.0)


def _count_in_redis(cache: RedisCache, key: str, arguments: tuple) -> bytes:
    client = cache._cache.get_client(key, write=True)
    return cast(bytes, client.eval(_WINDOW, 1, key, *arguments))  # a blocking client


def _redis_down() -> None:
    global _last_warning, _redis_down_until
    now = time.monotonic()
    _redis_down_until = now + RETRY_REDIS_AFTER_S
    if now - _last_warning >= WARN_EVERY_S:
        _last_warning = now
        logger.warning(
            "Redis does not answer: each web process counts the API rate limits alone"
            " until it does."
        )


class AnonRateThrottle(_CountedInRedis, throttling.AnonRateThrottle):
    """Anonymous requests, per client address (REST_FRAMEWORK's NUM_PROXIES)."""


class UserRateThrottle(_CountedInRedis, throttling.UserRateThrottle):
    """Signed-in requests, per user."""
