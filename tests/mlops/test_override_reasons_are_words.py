"""Reasons are words (issue 21, part 5) for activation overrides: a reason typed into the
activation or rollback form that has no visible words is refused with 400 and the message;
the service and the command refuse it too; a real reason still activates."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from chestnet_site.errors import ServiceError
from mlops import rollout
from registry.models import Activation, ModelVersion
from tests.mlops.test_mlops_rollout import evaluate, register, rolled_forward  # noqa: F401

NOT_WORDS = {
    "zero-width space": "\u200b",
    "control characters": "\x01\x02\x7f",
    "whitespace": "  \t ",
    "a letter and a dot": "a.",
    "direction marks and a dash": "\u200e-\u200f",
}
BAD = pytest.mark.parametrize("reason", NOT_WORDS.values(), ids=NOT_WORDS.keys())


@pytest.fixture
def weak(register, evaluate):  # noqa: F811
    version = register("weak-1")
    evaluate(version, roc_auc=0.55)
    return version


@BAD
def test_the_activation_form_refuses_an_override_reason_without_words(
    weak, admin_user, client_for, reason
):
    url = reverse("mlops:version_activate", args=[weak.pk])
    response = client_for(admin_user).post(
        url, {"operating_point": "card", "override_reason": reason}
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "Give the override reason in words" in text and 'name="override_reason"' in text
    assert not ModelVersion.objects.filter(is_active=True).exists()
    assert not Activation.objects.exists()


@BAD
def test_the_rollback_form_refuses_an_override_reason_without_words(
    rolled_forward,  # noqa: F811  (the fixture imported above)
    admin_user,
    client_for,
    reason,
):
    _, v2, earlier = rolled_forward
    url = reverse("mlops:version_rollback", args=[earlier.pk])
    response = client_for(admin_user).post(url, {"override_reason": reason})
    assert response.status_code == 400
    text = response.content.decode()
    assert "Give the override reason in words" in text and "Roll back below the floors" in text
    assert ModelVersion.objects.get(is_active=True) == v2


@pytest.mark.parametrize("reason", ["\u200b", "\x01\x02", "a.", "\u200e-\u200f"])
def test_the_service_refuses_an_override_reason_without_words(weak, admin_user, reason):
    with pytest.raises(ServiceError, match="override reason in words"):
        rollout.rollout_activate(version=weak, user=admin_user, override_reason=reason)
    assert not Activation.objects.exists()


def test_the_command_refuses_an_override_reason_without_words(weak):
    with pytest.raises(CommandError, match="override reason in words"):
        call_command("activate_model", "weak-1", "--override-reason", "\u200b\u200b")
    assert not Activation.objects.exists()


def test_a_real_override_reason_still_activates(weak, admin_user, client_for):
    url = reverse("mlops:version_activate", args=[weak.pk])
    response = client_for(admin_user).post(
        url, {"operating_point": "card", "override_reason": "Pilot\u200b on the demo ward."}
    )
    assert response.status_code == 302
    assert Activation.objects.get().override_reason == "Pilot on the demo ward."
