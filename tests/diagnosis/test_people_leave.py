"""People leave, the trail stays (issue 21, part 1): a user with any clinical, audit or
model history is deactivated, never deleted, by any path (the ORM's single and bulk
deletes, the admin's delete page and its bulk action); one without history may be, and
that is audited; every event keeps the actor's name and role as they were; deactivation,
role changes and every deletion attempt are audited; the trail refuses the ORM's bulk
paths, the cascades included."""

from __future__ import annotations

import csv
import importlib
import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import ProtectedError
from django.urls import reverse

from accounts import people, roles
from diagnosis import services
from diagnosis.models import AuditEvent, Case, ImmutableRecord, Review
from tests.support import factories
from tests.support.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db
User = get_user_model()


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


@pytest.fixture
def with_history(client_for, radiologist):
    """A radiologist who logged in, opened a case, and signed its report."""
    client_for(radiologist)  # the login is audited
    case = factories.awaiting_review_case(claimed_by=radiologist)
    services.audit_record(actor=radiologist, action=AuditEvent.Action.VIEWED, case=case)
    services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="normal", report="Clear."
    )
    return radiologist


@pytest.fixture
def mistake(db):
    """An account made by mistake: a role, and nothing done."""
    return factories.UserFactory(username="made-by-mistake", role=roles.CLINICIAN)


# --- no path deletes a user with history ------------------------------------------------


def test_a_radiologist_with_history_cannot_be_deleted_through_the_orm(with_history):
    trail = list(AuditEvent.objects.filter(actor=with_history).values_list("pk", "action"))
    with pytest.raises(ProtectedError):
        with_history.delete()
    with pytest.raises(ProtectedError):
        User.objects.filter(pk=with_history.pk).delete()  # the ORM's bulk path
    assert User.objects.filter(pk=with_history.pk).exists()
    after = list(AuditEvent.objects.filter(actor=with_history).values_list("pk", "action"))
    assert after == trail and len(trail) >= 3  # login, view, claim, signature
    assert Review.objects.get().author == with_history
    # Each attempt is in the trail, naming the account and what the record keeps of it.
    refused = _events("user_delete_refused")
    assert len(refused) == 2
    assert all("user dr-radiologist" in event.detail for event in refused)
    assert "audit events" in refused[0].detail and "reviews" in refused[0].detail


def test_model_history_alone_protects_the_account_too(db):
    from mlops.models import Event

    trainer = factories.UserFactory(username="trainer", role=roles.ADMIN)
    Event.objects.create(actor=trainer, action="import", detail="a dataset")
    assert people.user_history(trainer) == ["events"]
    with pytest.raises(ProtectedError):
        User.objects.filter(pk=trainer.pk).delete()
    assert Event.objects.get().actor == trainer
    (refused,) = _events("user_delete_refused")
    assert "user trainer" in refused.detail


def test_the_service_refuses_with_the_reason_and_the_way_out(with_history, admin_user):
    with pytest.raises(people.UserHasHistory, match="Deactivate the account instead"):
        people.user_delete(user=with_history, by=admin_user)
    assert User.objects.filter(pk=with_history.pk).exists()
    (refused,) = _events("user_delete_refused")
    assert refused.actor == admin_user


def test_the_admin_delete_page_explains_and_offers_deactivation(
    client_for, admin_user, with_history
):
    client = client_for(admin_user)
    url = reverse("admin:auth_user_delete", args=[with_history.pk])
    page = client.get(url)
    text = page.content.decode()
    assert page.status_code == 200
    assert "dr-radiologist cannot be deleted" in text and "Audit events" in text
    assert reverse("admin:auth_user_deactivate", args=[with_history.pk]) in text
    confirmed = client.post(url, {"post": "yes"})
    assert confirmed.status_code == 409 and "cannot be deleted" in confirmed.content.decode()
    assert User.objects.filter(pk=with_history.pk).exists()
    refused = _events("user_delete_refused")
    assert len(refused) == 2 and {event.actor for event in refused} == {admin_user}
    assert {event.actor_username for event in refused} == {"site-admin"}


def test_the_admin_bulk_delete_deletes_only_accounts_without_history(
    client_for, admin_user, with_history, mistake
):
    client = client_for(admin_user)
    changelist = reverse("admin:auth_user_changelist")
    both = {"action": "delete_selected", "_selected_action": [with_history.pk, mistake.pk]}
    confirm = client.post(changelist, both)
    text = confirm.content.decode()
    assert confirm.status_code == 200 and "made-by-mistake" in text
    assert "Not deleted, because the record keeps what they did: dr-radiologist" in text
    assert f'value="{with_history.pk}"' not in text  # not among those to confirm

    done = client.post(
        changelist, {"action": "delete_selected", "_selected_action": [mistake.pk], "post": "yes"}
    )
    assert done.status_code == 302
    assert not User.objects.filter(pk=mistake.pk).exists()
    assert User.objects.filter(pk=with_history.pk).exists()
    (refused,) = _events("user_delete_refused")
    assert "dr-radiologist" in refused.detail and refused.actor == admin_user
    (deleted,) = _events("user_deleted")
    assert deleted.actor == admin_user and "user made-by-mistake" in deleted.detail

    only_history = {"action": "delete_selected", "_selected_action": [with_history.pk]}
    page = client.post(changelist, only_history)
    assert page.status_code == 409 and "cannot be deleted" in page.content.decode()
    assert User.objects.filter(pk=with_history.pk).exists()


# --- an account without history may go, audited ------------------------------------------


def test_an_account_without_history_is_deleted_in_the_admin_and_audited(
    client_for, admin_user, mistake
):
    client = client_for(admin_user)
    url = reverse("admin:auth_user_delete", args=[mistake.pk])
    assert "Are you sure" in client.get(url).content.decode()
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not User.objects.filter(pk=mistake.pk).exists()
    (deleted,) = _events("user_deleted")
    assert deleted.actor == admin_user and deleted.actor_username == "site-admin"
    assert deleted.detail == f"user made-by-mistake (id {mistake.pk}), roles clinician"
    assert not _events("user_delete_refused")


def test_an_account_without_history_deleted_through_the_orm_is_audited(mistake):
    User.objects.filter(pk=mistake.pk).delete()
    (deleted,) = _events("user_deleted")
    assert deleted.actor is None and "user made-by-mistake" in deleted.detail


# --- the trail keeps who acted, as they were ---------------------------------------------


def test_events_keep_the_name_and_role_after_rename_deactivation_and_role_change(
    client_for, admin_user, with_history
):
    viewed = AuditEvent.objects.filter(actor=with_history, action="viewed").get()
    assert (viewed.actor_username, viewed.actor_role) == ("dr-radiologist", "radiologist")

    with_history.username = "dr-renamed"
    with_history.is_active = False
    with_history.save()
    with_history.groups.set([Group.objects.get_or_create(name=roles.CLINICIAN)[0]])

    viewed = AuditEvent.objects.get(pk=viewed.pk)
    assert (viewed.actor_username, viewed.actor_role) == ("dr-radiologist", "radiologist")
    client = client_for(admin_user)
    page = client.get(reverse("audit_list"), {"user": "dr-radiologist"}).content.decode()
    assert "<td>dr-radiologist</td><td>radiologist</td><td>Viewed</td>" in page
    # The account's present name finds its events too.
    by_new_name = client.get(reverse("audit_list"), {"user": "dr-renamed"})
    assert viewed in list(by_new_name.context["page"])
    export = client.get(reverse("audit_export"), {"user": "dr-radiologist"})
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert {(row["user"], row["role"]) for row in rows if row["action"] == "viewed"} == {
        ("dr-radiologist", "radiologist")
    }
    admin_page = client.get(reverse("admin:diagnosis_auditevent_changelist")).content.decode()
    assert "dr-radiologist" in admin_page


def test_a_superusers_role_is_admin_and_anonymous_events_have_none(admin_user, clinician):
    event = services.audit_record(actor=admin_user, action="viewed")
    assert (event.actor_username, event.actor_role) == ("site-admin", "admin")
    failed = services.audit_record(actor=None, action="login_failed", detail="someone")
    assert (failed.actor_username, failed.actor_role) == ("", "")
    clinician.groups.add(Group.objects.get_or_create(name=roles.RADIOLOGIST)[0])
    both = services.audit_record(actor=clinician, action="viewed")
    assert both.actor_role == "clinician,radiologist"


def test_the_data_migration_fills_the_snapshot_of_older_events(clinician):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    older = AuditEvent.objects.create(actor=clinician, action="viewed")  # as before issue 21
    assert older.actor_username == ""
    migration = importlib.import_module("diagnosis.migrations.0017_audit_actor_snapshot")
    state = MigrationExecutor(connection).loader.project_state(
        ("diagnosis", "0017_audit_actor_snapshot")
    )
    migration.fill_snapshot(state.apps, None)
    older = AuditEvent.objects.get(pk=older.pk)
    assert (older.actor_username, older.actor_role) == ("dr-clinician", "clinician")


# --- account changes are audited, whichever way they are made ---------------------------


def test_deactivation_and_reactivation_through_the_orm_are_audited(radiologist):
    radiologist.is_active = False
    radiologist.save()
    radiologist.is_active = True
    radiologist.save(update_fields=["is_active"])
    (off,) = _events("user_deactivated")
    (on,) = _events("user_reactivated")
    assert off.detail == on.detail == f"user dr-radiologist (id {radiologist.pk})"
    assert off.actor is None  # nobody signed in did it: "system"


def test_a_deactivated_account_no_longer_signs_in_and_keeps_its_trail(
    client_for, admin_user, radiologist
):
    client = client_for(radiologist)
    assert client.get(reverse("worklist")).status_code == 200
    assert people.user_deactivate(user=radiologist, by=admin_user)
    assert not people.user_deactivate(user=radiologist, by=admin_user)  # already
    assert client.get(reverse("worklist")).status_code == 302  # to the login page
    assert AuditEvent.objects.filter(actor=radiologist, action="listed").exists()
    (event,) = _events("user_deactivated")
    assert event.actor == admin_user


def test_a_login_is_not_an_account_change(client, radiologist):
    credentials = {"username": "dr-radiologist", "password": TEST_PASSWORD}
    assert client.post(reverse("login"), credentials).status_code == 302
    assert _events("login") and not _events("user_renamed") and not _events("user_deactivated")


def test_deactivation_in_the_admin_is_audited_as_the_admin(client_for, admin_user, with_history):
    client = client_for(admin_user)
    response = client.post(reverse("admin:auth_user_deactivate", args=[with_history.pk]))
    assert response.status_code == 302
    with_history.refresh_from_db()
    assert not with_history.is_active
    (event,) = _events("user_deactivated")
    assert event.actor == admin_user and "dr-radiologist" in event.detail
    # The bulk action does the same.
    other = factories.UserFactory(username="dr-leaving", role=roles.RADIOLOGIST)
    changelist = reverse("admin:auth_user_changelist")
    client.post(changelist, {"action": "deactivate_selected", "_selected_action": [other.pk]})
    other.refresh_from_db()
    assert not other.is_active
    assert [event.actor for event in _events("user_deactivated")] == [admin_user, admin_user]


def test_role_changes_through_the_orm_are_audited_both_ways(radiologist):
    admins = Group.objects.get_or_create(name=roles.ADMIN)[0]
    radiologist.groups.add(admins)
    admins.user_set.remove(radiologist)  # the group's side
    radiologist.groups.clear()
    radiologist.is_superuser = True
    radiologist.save()
    details = [event.detail for event in _events("roles_changed")]
    named = f"user dr-radiologist (id {radiologist.pk})"
    assert details[-4:] == [
        f"{named}: roles radiologist → admin,radiologist",
        f"{named}: roles admin,radiologist → radiologist",
        f"{named}: roles radiologist → none",
        f"{named}: superuser granted",
    ]


def test_deleting_a_group_is_a_role_change_for_each_member(radiologist, radiologist2):
    Group.objects.get(name=roles.RADIOLOGIST).delete()
    details = {event.detail for event in _events("roles_changed")}
    for person in (radiologist, radiologist2):
        assert f"user {person.username} (id {person.pk}): roles radiologist → none" in details


def test_role_changes_in_the_admin_are_audited_as_the_admin(client_for, admin_user, radiologist):
    admins = Group.objects.get_or_create(name=roles.ADMIN)[0]
    radiologists = Group.objects.get(name=roles.RADIOLOGIST)
    form = {
        "username": radiologist.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [radiologists.pk, admins.pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "08:00:00",
        "last_login_0": "",
        "last_login_1": "",
    }
    url = reverse("admin:auth_user_change", args=[radiologist.pk])
    response = client_for(admin_user).post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    event = _events("roles_changed")[-1]
    assert event.actor == admin_user
    assert event.detail.endswith("roles radiologist → admin,radiologist")


# --- the trail refuses the ORM's bulk paths, cascades included ---------------------------


def test_audit_events_refuse_every_bulk_path(with_history):
    events = AuditEvent.objects.filter(actor=with_history)
    before = list(events.values_list("pk", "actor", "detail"))
    attempts = [
        lambda: events.update(actor=None),
        lambda: AuditEvent._base_manager.filter(actor=with_history).update(actor=None),
        lambda: events.delete(),
        lambda: AuditEvent._base_manager.all().delete(),
        lambda: events._raw_delete(events.db),
        lambda: AuditEvent.objects.bulk_update(list(events), ["detail"]),
        lambda: AuditEvent.objects.update_or_create(pk=before[0][0], defaults={"detail": "x"}),
    ]
    for attempt in attempts:
        with pytest.raises(ImmutableRecord):
            attempt()
    assert list(events.values_list("pk", "actor", "detail")) == before


def test_signed_reports_refuse_the_bulk_paths_too(with_history):
    reviews = Review.objects.all()
    with pytest.raises(ImmutableRecord):
        Review._base_manager.update(report="Rewritten.")
    with pytest.raises(ImmutableRecord):
        reviews.bulk_update(list(reviews), ["report"])
    with pytest.raises(ImmutableRecord):
        reviews._raw_delete(reviews.db)
    assert Review.objects.get().report == "Clear."


def test_deleting_an_unreported_case_only_unlinks_its_events(admin_user, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    services.audit_record(actor=clinician, action="viewed", case=case, detail="page")
    kept = list(AuditEvent.objects.filter(case=case).values_list("pk", "actor", "detail"))
    services.case_delete(case=case, user=admin_user)
    assert not Case.objects.filter(pk=case.pk).exists()
    events = AuditEvent.objects.filter(case_ref=case.pk, pk__in=[pk for pk, _, _ in kept])
    assert list(events.values_list("pk", "actor", "detail")) == kept
    assert not events.filter(case__isnull=False).exists()
