"""Failures the pipeline must survive, with real processes: a worker killed mid-task (parent
and child, as a crashed machine) and a broker that is down or hung when a case is uploaded.
Each test has its own Redis, so what it leaves in the broker cannot reach other tests."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from devtools.workers import kill_worker
from diagnosis import services
from diagnosis.models import Case, Image, Prediction
from tests.support import factories
from tests.support.images import png_bytes

# A worker that holds each claimed image for a while: time to kill it mid-analysis.
SLOW = "tests.support.slow_inference"

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _upload() -> int:
    clinician = factories.UserFactory(username="it-clinician", role=roles.CLINICIAN)
    validated = [services.image_validate(name="a.png", data=png_bytes(128, 128))]
    return services.case_create(owner=clinician, images=validated).images.get().pk


def _image_in(image_id: int, status: str) -> Image | None:
    image = Image.objects.get(pk=image_id)
    return image if image.status == status else None


def test_a_worker_killed_mid_task_has_its_message_redelivered_to_the_next_worker(
    private_redis, workers, wait
):
    """The broker's own redelivery (acks_late + visibility timeout). No beat runs, so the
    requeue sweep cannot be what saves the image."""
    first = workers(app=SLOW, REDIS_URL=private_redis.url, SLOW_INFERENCE_S="120")
    image_id = _upload()
    token = wait(lambda: _image_in(image_id, Image.Status.PROCESSING), timeout=60).claim_token
    kill_worker(first)
    assert private_redis.unacked() == 1, "the broker no longer holds the task: it is lost"

    workers(REDIS_URL=private_redis.url, CELERY_BROKER_VISIBILITY_TIMEOUT_S="3")
    image = wait(lambda: _image_in(image_id, Image.Status.DONE), timeout=120)
    assert image.claim_token == token  # the same message, delivered again
    assert image.attempts == 2
    assert Prediction.objects.filter(image_id=image_id).count() == 1
    assert wait(lambda: private_redis.unacked() == 0, timeout=30)


def test_an_image_abandoned_by_a_killed_worker_is_requeued_by_the_sweep_after_its_lease(
    private_redis, workers, wait
):
    """What recovers the image first with the default settings: the lease (3 min) runs out
    before the broker's visibility timeout (5 min), and the beat sweep publishes a new task."""
    first = workers(app=SLOW, REDIS_URL=private_redis.url, SLOW_INFERENCE_S="120")
    image_id = _upload()
    token = wait(lambda: _image_in(image_id, Image.Status.PROCESSING), timeout=60).claim_token
    kill_worker(first)
    # As if the lease had run out, without waiting three minutes for it.
    expired = timezone.now() - services.PROCESSING_LEASE - timedelta(seconds=1)
    Image.objects.filter(pk=image_id).update(claimed_at=expired)

    workers(beat=True, REDIS_URL=private_redis.url)  # default visibility timeout
    image = wait(lambda: _image_in(image_id, Image.Status.DONE), timeout=120)
    assert image.claim_token != token  # a new task, published by the sweep
    assert image.attempts == 2
    assert Prediction.objects.filter(image_id=image_id).count() == 1


def _post_in_time(client: Client, data: dict, *, limit: float) -> tuple[object, float]:
    """POST the upload form in a thread, so a request that hangs fails the test instead of
    hanging it."""
    outcome: dict = {}

    def post() -> None:
        started = time.monotonic()
        try:
            outcome["response"] = client.post(reverse("case_new"), data)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            outcome["seconds"] = time.monotonic() - started
            connections.close_all()

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the upload still hangs after {limit:.0f} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"], outcome["seconds"]


def _clinician_client() -> Client:
    client = Client()
    client.force_login(factories.UserFactory(username="it-clinician", role=roles.CLINICIAN))
    return client


def _form() -> dict:
    return {"urgency": "routine", "images": [SimpleUploadedFile("a.png", png_bytes(128, 128))]}


def test_an_upload_while_the_broker_is_down_is_saved_and_analysed_once_it_is_back(
    private_redis, workers, wait
):
    workers(beat=True, REDIS_URL=private_redis.url)  # the requeue sweep runs every 5 s
    private_redis.stop()
    response, seconds = _post_in_time(_clinician_client(), _form(), limit=60)
    assert response.status_code == 302
    assert seconds < 10, f"the upload took {seconds:.1f} s with the broker down"
    case = Case.objects.get()
    assert case.status == Case.Status.QUEUED
    assert case.images.get().status == Image.Status.QUEUED

    private_redis.start()
    image = wait(lambda: _image_in(case.images.get().pk, Image.Status.DONE), timeout=150)
    assert Case.objects.get(pk=case.pk).status == Case.Status.AWAITING_REVIEW
    assert Prediction.objects.filter(image=image).count() == 1


def test_an_upload_does_not_hang_on_a_broker_that_accepts_connections_but_never_answers(
    private_redis, shared_media
):
    private_redis.pause()
    try:
        response, seconds = _post_in_time(_clinician_client(), _form(), limit=90)
    finally:
        private_redis.resume()
    assert response.status_code == 302
    limit = 2 * settings.CELERY_BROKER_SOCKET_TIMEOUT_S + 3
    assert seconds < limit, f"the upload took {seconds:.1f} s with the broker hung"
    assert Case.objects.get().status == Case.Status.QUEUED
