"""The API's throttles counted in Redis (chestnet_site.throttling): DRF's sliding window,
kept in one sorted set per client; while Redis does not answer, each process counts alone,
with a warning. Two web processes sharing it:
tests/integration/test_throttles_across_processes.py."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from chestnet_site import throttling
from devtools.ports import free_port


def _redis_cache(location: str) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": f"throttling-test-{free_port()}",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _anonymous(address: str) -> Request:
    return Request(APIRequestFactory().get("/api/v1/cases/", REMOTE_ADDR=address))


@pytest.mark.integration
def test_the_window_slides_as_drfs_own(redis_url, settings, monkeypatch):
    settings.CACHES = _redis_cache(redis_url)
    monkeypatch.setattr(throttling.AnonRateThrottle, "rate", "2/min", raising=False)
    clock = Clock()
    monkeypatch.setattr(throttling.AnonRateThrottle, "timer", clock)

    def ask(at: float) -> tuple[bool, float | None]:
        clock.now = at
        throttle = throttling.AnonRateThrottle()
        return throttle.allow_request(_anonymous("10.20.30.40"), None), throttle.wait()

    assert ask(1_000.0)[0] and ask(1_010.0)[0]
    assert ask(1_020.0) == (False, 40.0)  # the first request leaves the window at 1 060
    assert ask(1_061.0)[0]  # it has left: one place
    assert ask(1_062.0) == (False, 8.0)  # the second leaves at 1 070
    other = throttling.AnonRateThrottle()
    assert other.allow_request(_anonymous("10.20.30.41"), None)  # another client's window


@pytest.fixture
def redis_down(settings, monkeypatch):
    """A Redis cache where nothing listens; the process has no memory of an earlier outage."""
    settings.CACHES = _redis_cache(f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(throttling, "_last_warning", -throttling.WARN_EVERY_S)
    monkeypatch.setattr(throttling, "_redis_down_until", 0.0)
    monkeypatch.setattr(throttling, "_IN_PROCESS", throttling.LocMemCache("test", {}))


@pytest.mark.django_db
def test_the_process_counts_alone_with_a_warning_while_redis_does_not_answer(
    redis_down, monkeypatch, caplog
):
    monkeypatch.setattr(throttling.AnonRateThrottle, "rate", "1/min", raising=False)
    with caplog.at_level(logging.WARNING, logger="chestnet_site.throttling"):
        statuses = [
            APIClient().post(reverse("api_token"), {"username": "x", "password": "y"}).status_code
            for _ in range(3)
        ]
    # The first, with wrong credentials, is answered (not an error); the rate then holds.
    assert statuses == [400, 429, 429]
    warnings = [r.getMessage() for r in caplog.records if r.name == "chestnet_site.throttling"]
    assert warnings == [
        "Redis does not answer: each web process counts the API rate limits alone until it does."
    ]


def test_redis_is_asked_again_only_after_a_pause(redis_down, monkeypatch):
    asked = []
    real = throttling._count_in_redis

    def spy(*arguments):
        asked.append(1)
        return real(*arguments)

    monkeypatch.setattr(throttling, "_count_in_redis", spy)
    monkeypatch.setattr(throttling.AnonRateThrottle, "rate", "100/min", raising=False)
    clock = [1_000.0]
    monkeypatch.setattr(throttling.time, "monotonic", lambda: clock[0])

    def ask() -> bool:
        return throttling.AnonRateThrottle().allow_request(_anonymous("10.20.30.42"), None)

    assert ask() and ask() and ask()
    assert len(asked) == 1  # the failure, then this process's own count
    clock[0] += throttling.RETRY_REDIS_AFTER_S
    assert ask()
    assert len(asked) == 2
