"""The live worklist: STAT, urgent and routine; the columns, as rows and as JSON; sorting
and filters; keyset pages that neither repeat nor skip a case while cases arrive and leave;
a poll that costs one page query and writes no audit event while nothing changed; and
"claim next", atomic even when two radiologists ask at once."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pydicom.dataset import Dataset

from accounts import roles
from devtools import dicom_files
from diagnosis import selectors, services, worklist
from diagnosis.models import AuditEvent, Case, Image
from ml.header import study_datetime
from tests.support import factories
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db

ROWS = "/worklist/rows/"
_REQUESTER: list = []


@pytest.fixture(autouse=True)
def _one_requester(clinician):
    """Every case here is requested by one clinician: a user per case would cost a
    password hash each, and these tests make hundreds of cases."""
    _REQUESTER[:] = [clinician]


def _ready(**fields) -> Case:
    return factories.awaiting_review_case(**{"owner": _REQUESTER[0], **fields})


def _refused(**fields) -> Case:
    return factories.refused_case(**{"owner": _REQUESTER[0], **fields})


def _queued(**fields) -> Case:
    return factories.CaseFactory(**{"owner": _REQUESTER[0], **fields})


def _ids(cases) -> list[int]:
    return [case.pk for case in cases]


def _listed(user) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.LISTED, actor=user))


def _waiting_since(case: Case, when: datetime) -> Case:
    Case.objects.filter(pk=case.pk).update(ready_at=when)
    return case


# --- priorities ---------------------------------------------------------------------------


def test_stat_comes_before_urgent_before_routine_then_probability_then_waiting(radiologist):
    routine_high = _ready(probability=0.95)
    urgent_low = _ready(probability=0.10, urgency="urgent")
    stat_low = _ready(probability=0.05, urgency="stat")
    urgent_high = _ready(probability=0.90, urgency="urgent")
    stat_refused = _refused(urgency="stat")  # no AI result: last of the STATs
    stat_high = _ready(probability=0.60, urgency="stat")
    routine_old = _ready(probability=0.20)
    routine_new = _ready(probability=0.20)
    _waiting_since(routine_old, timezone.now() - timedelta(hours=2))
    _queued(urgency="stat")  # still queued: not on the worklist
    order = _ids(selectors.worklist_for(user=radiologist))
    assert order == _ids(
        [
            stat_high,
            stat_low,
            stat_refused,
            urgent_high,
            urgent_low,
            routine_high,
            routine_old,
            routine_new,
        ]
    )


def test_the_upload_form_and_the_api_accept_stat(client_for, api_client_for, clinician):
    client = client_for(clinician)
    assert b'value="stat"' in client.get(reverse("case_new")).content
    form = {"urgency": "stat", "images": [SimpleUploadedFile("a.png", png_bytes())]}
    assert client.post(reverse("case_new"), form).status_code == 302
    upload = {"urgency": "stat", "images": [SimpleUploadedFile("b.png", png_bytes())]}
    created = api_client_for(clinician).post("/api/v1/cases/", upload, format="multipart")
    assert created.status_code == 201 and created.json()["urgency"] == "stat"
    assert list(Case.objects.values_list("urgency", flat=True)) == ["stat", "stat"]


# --- sorting and filters --------------------------------------------------------------------


def test_sorting_by_waiting_time_and_by_study_time(radiologist):
    now = timezone.now()
    urgent = _ready(probability=0.9, urgency="urgent")
    old = _ready(probability=0.1)
    recent_study = _ready(probability=0.5)
    _waiting_since(old, now - timedelta(hours=3))
    Case.objects.filter(pk=recent_study.pk).update(study_at=now + timedelta(minutes=5))
    Case.objects.filter(pk=old.pk).update(study_at=now - timedelta(days=1))

    def order(sort: str) -> list[int]:
        return _ids(selectors.worklist_for(user=radiologist, sort=sort))

    assert order("priority") == _ids([urgent, recent_study, old])
    assert order("waiting") == _ids([old, urgent, recent_study])
    assert order("study_newest") == _ids([recent_study, urgent, old])
    assert order("study_oldest") == _ids([old, urgent, recent_study])


def test_filters_by_priority_ai_flag_claim_and_source(radiologist, radiologist2):
    stat = _ready(probability=0.9, urgency="stat")
    urgent = _ready(probability=0.8, urgency="urgent")
    normal = _ready(probability=0.1, source="dimse")
    services.case_claim(case=normal, user=radiologist2)

    def listed(user=radiologist, **filters) -> list[int]:
        return _ids(selectors.worklist_for(user=user, **filters))

    assert listed(urgency="stat") == [stat.pk]
    assert listed(urgency="urgent") == [urgent.pk]
    assert listed(flagged=True) == _ids([stat, urgent])
    assert listed(flagged=False) == [normal.pk]
    assert listed(claim="unclaimed") == _ids([stat, urgent])
    assert listed(user=radiologist2, claim="mine") == [normal.pk]
    assert listed(source="dimse") == [normal.pk]
    assert listed(source="upload", urgency="urgent") == [urgent.pk]


def test_the_page_keeps_filters_and_sort_in_its_links_and_forms(client_for, radiologist):
    for probability in (0.9, 0.8, 0.7):
        _ready(probability=probability, urgency="urgent")
    client = client_for(radiologist)
    query = {"urgency": "urgent", "flagged": "yes", "source": "upload", "sort": "waiting"}
    page = client.get(reverse("worklist"), query)
    text = page.content.decode()
    assert '<option value="urgent" selected>' in text
    assert '<option value="waiting" selected>' in text
    assert '<option value="upload" selected>' in text
    # Claim next takes the top of the list as filtered and sorted.
    assert '<input type="hidden" name="urgency" value="urgent">' in text
    assert '<input type="hidden" name="sort" value="waiting">' in text
    # Unknown values mean "all", never an error.
    assert client.get(reverse("worklist"), {"urgency": "x", "sort": "y"}).status_code == 200


# --- the columns ----------------------------------------------------------------------------


def _received_study(**header) -> Case:
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=64), **header)
    received = services.instance_receive(
        data=dicom_files.to_bytes(ds), source="dimse", source_ae="ORTHANC"
    )
    return services.case_refresh_status(case_id=received.case_id)


def test_the_api_rows_carry_every_column(api_client_for, radiologist):
    analysed = _ready(probability=0.83, urgency="urgent", patient_id="MRN-1", age=3, sex="F")
    factories.ImageFactory(case=analysed, status="refused", refusal_reason="unsupported")
    refused = _refused(patient_id="MRN-2", reason="not_chest_radiograph")
    rows = {row["id"]: row for row in api_client_for(radiologist).get("/api/v1/worklist/").json()}

    row = rows[analysed.pk]
    assert (row["patient_id"], row["age"], row["sex"], row["urgency"]) == (
        "MRN-1",
        3,
        "F",
        "urgent",
    )
    assert (row["image_count"], row["refused_images"]) == (2, 1)
    assert (row["max_probability"], row["ai_flagged"]) == (0.83, True)
    assert row["study_at"] is None and row["study_time"] and row["waiting_since"]
    first_image = analysed.images.order_by("pk").first()
    assert row["preview_url"] == f"/api/v1/images/{first_image.pk}/preview/"
    assert row["source"] == "upload" and row["claimed_by"] is None

    row = rows[refused.pk]
    assert row["max_probability"] is None and row["ai_flagged"] is False
    assert (row["refused_images"], row["refusal_reason"]) == (1, "not_chest_radiograph")
    assert row["refusal_explanation"] == "This does not look like a frontal chest radiograph."


def test_a_network_study_shows_its_dicom_study_time_and_accession(api_client_for, radiologist):
    case = _received_study(accession="ACC-7")
    Image.objects.filter(case=case).update(
        status="refused", refusal_reason="unreadable", result_at=timezone.now()
    )
    services.case_refresh_status(case_id=case.pk)
    # StudyDate 20261130, StudyTime 101500, in the site's zone (no TimezoneOffsetFromUTC).
    expected = datetime(2026, 11, 30, 10, 15, tzinfo=timezone.get_default_timezone())
    assert Case.objects.get(pk=case.pk).study_at == expected
    (row,) = api_client_for(radiologist).get("/api/v1/worklist/").json()
    assert row["accession_number"] == "ACC-7" and row["source_ae"] == "ORTHANC"
    assert datetime.fromisoformat(row["study_at"]) == expected
    assert row["study_time"] == row["study_at"]


# pydicom warns on the older "YYYY.MM.DD" and "HH:MM:SS" and on impossible values: the
# very headers this reads.
@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")
@pytest.mark.parametrize(
    ("date", "time", "offset", "expected"),
    [
        ("20261130", "101500", "", datetime(2026, 11, 30, 10, 15, tzinfo=UTC)),
        ("20261130", "101500.25", "", datetime(2026, 11, 30, 10, 15, 0, 250000, tzinfo=UTC)),
        ("20261130", "0930", "", datetime(2026, 11, 30, 9, 30, tzinfo=UTC)),
        ("2026.11.30", "10:15:30", "", datetime(2026, 11, 30, 10, 15, 30, tzinfo=UTC)),
        ("20261130", "", "", datetime(2026, 11, 30, tzinfo=UTC)),
        ("20261130", "101500", "+0200", datetime(2026, 11, 30, 8, 15, tzinfo=UTC)),
        ("20261130", "101500", "-0500", datetime(2026, 11, 30, 15, 15, tzinfo=UTC)),
        # An offset no place has (vendor junk) is as if absent: the site's time.
        ("20261130", "101500", "+2500", datetime(2026, 11, 30, 10, 15, tzinfo=UTC)),
        ("20261130", "101500", "+0175", datetime(2026, 11, 30, 10, 15, tzinfo=UTC)),
        ("", "101500", "", None),
        ("20261340", "101500", "", None),
        ("20261130", "251500", "", None),
    ],
)
def test_the_study_time_is_read_from_study_date_and_time(settings, date, time, offset, expected):
    settings.TIME_ZONE = "UTC"
    ds = Dataset()
    ds.StudyDate, ds.StudyTime = date, time
    if offset:
        ds.TimezoneOffsetFromUTC = offset
    assert study_datetime(ds, timezone.get_default_timezone()) == expected


def test_a_study_time_without_offset_is_the_sites_local_time(settings):
    settings.TIME_ZONE = "Europe/Paris"
    ds = Dataset()
    ds.StudyDate, ds.StudyTime = "20261130", "101500"
    assert study_datetime(ds, timezone.get_default_timezone()) == datetime(
        2026, 11, 30, 10, 15, tzinfo=ZoneInfo("Europe/Paris")
    )


def test_the_page_shows_every_column(client_for, radiologist):
    case = _ready(probability=0.3, urgency="stat", patient_id="MRN-9", age=2, sex="M")
    refused = _refused(reason="outside_intended_use", patient_id="MRN-10")
    page = client_for(radiologist).get(reverse("worklist")).content.decode()
    row = page[page.index(f'data-case-id="{case.pk}"') :].split("</tr>")[0]
    assert '<span class="badge stat">STAT</span>' in row
    assert "MRN-9" in row and "2 y" in row and 'title="Male">M</abbr>' in row
    assert 'class="wl-num">1</td>' in row and "0.30" in row
    assert "data-waiting-since=" in row and "upload" in row
    preview = case.images.get()
    assert f'data-src="/images/{preview.pk}/preview/"' in row
    assert 'aria-expanded="false"' in row and "Claim" in row
    row = page[page.index(f'data-case-id="{refused.pk}"') :].split("</tr>")[0]
    assert "Not analysed by the AI" in row
    assert "outside the population or view the AI was validated on" in row


# --- keyset pages ---------------------------------------------------------------------------


def _key(case: Case, sort: str) -> tuple:
    return tuple(getattr(case, key) for key in selectors.WORKLIST_SORTS[sort].keys)


@pytest.mark.parametrize("sort", list(selectors.WORKLIST_SORTS))
def test_keyset_pages_neither_repeat_nor_skip_cases_while_cases_arrive_and_leave(radiologist, sort):
    rng = random.Random(7)
    now = timezone.now()
    tie = now - timedelta(hours=1)

    def arrive(tied: bool = False) -> Case:
        case = _ready(
            probability=0.5 if tied else rng.random(),
            urgency=rng.choice(["stat", "urgent", "routine"]),
        )
        # Many cases share every sort key but the id: the id breaks the tie.
        when = tie if tied else now - timedelta(minutes=rng.randint(0, 600))
        Case.objects.filter(pk=case.pk).update(ready_at=when, study_at=when)
        return case

    present = {arrive(tied=index % 2 == 0).pk for index in range(21)}
    seen: list[int] = []
    left: set[int] = set()
    after = ""
    while True:
        page = selectors.worklist_page(user=radiologist, sort=sort, after=after, size=4)
        seen += _ids(page.cases)
        # Between two pages: two cases arrive (one ties), one case not yet shown is signed.
        arrive()
        arrive(tied=True)
        waiting = sorted(present - set(seen) - left)
        if waiting:
            Case.objects.filter(pk=waiting[0]).update(status=Case.Status.REPORTED)
            left.add(waiting[0])
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert len(seen) == len(set(seen)), "a case was shown twice"
    assert present - left <= set(seen), "a case was skipped"
    shown = {case.pk: case for case in Case.objects.filter(pk__in=seen)}
    keys = [_key(shown[pk], sort) for pk in seen]
    assert keys == sorted(keys, reverse=selectors.WORKLIST_SORTS[sort].descending)


def test_a_deep_page_is_an_index_seek_not_an_offset(radiologist):
    for index in range(8):
        _ready(probability=index / 10)
    first = selectors.worklist_page(user=radiologist, size=3)
    with CaptureQueriesContext(connection) as queries:
        second = selectors.worklist_page(user=radiologist, after=first.next_cursor, size=3)
    (sql,) = [query["sql"] for query in queries.captured_queries]
    assert " OFFSET " not in sql.upper()
    assert set(_ids(first.cases)).isdisjoint(_ids(second.cases))
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        # A seek on the row value, not a walk from the first case awaiting review.
        assert "USING INDEX case_worklist_priority (status=? AND (priority_rank" in plan
        assert "TEMP B-TREE" not in plan.upper()


def test_an_edited_cursor_shows_the_first_page_or_is_refused_by_the_api(
    client_for, api_client_for, radiologist
):
    case = _ready()
    with pytest.raises(selectors.InvalidCursor):
        selectors.worklist_page(user=radiologist, after="not-a-cursor")
    page = client_for(radiologist).get(reverse("worklist"), {"after": "bm9wZQ"})
    assert page.status_code == 200 and f'data-case-id="{case.pk}"' in page.content.decode()
    refused = api_client_for(radiologist).get("/api/v1/worklist/", {"after": "bm9wZQ"})
    assert refused.status_code == 400 and "after" in refused.json()["errors"]


def test_the_next_page_link_keeps_filters_and_sort(client_for, radiologist):
    for probability in (0.9, 0.8):
        _ready(probability=probability, urgency="urgent")
    client = client_for(radiologist)
    page = client.get(reverse("worklist"), {"urgency": "urgent", "sort": "waiting"})
    assert page.context["next_url"] is None  # one page
    for _ in range(selectors.WORKLIST_PAGE_SIZE):
        _queued(status=Case.Status.AWAITING_REVIEW, urgency="urgent")
    page = client.get(reverse("worklist"), {"urgency": "urgent", "sort": "waiting"})
    next_url = page.context["next_url"]
    assert next_url.startswith("/worklist/?urgency=urgent&sort=waiting&after=")
    deeper = client.get(next_url)
    assert len(deeper.context["cases"]) == 2 and b"First page" in deeper.content


def _queries(client, url: str, **params) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, params).status_code == 200
    return len(queries.captured_queries)


@pytest.mark.parametrize("url", ["/worklist/", ROWS, "/api/v1/worklist/"])
def test_the_number_of_queries_does_not_grow_with_the_rows_shown(
    client_for, radiologist, settings, url
):
    settings.CHESTNET_AUDIT_COALESCE_S = 0  # every request writes its event: same work each
    client = client_for(radiologist)
    _ready()
    _queries(client, url)  # sessions, groups: whatever a first request warms up
    few = _queries(client, url)
    for index in range(12):
        case = _ready(probability=index / 12, urgency="urgent")
        factories.ImageFactory(case=case, status="refused", refusal_reason="unsupported")
        factories.ImageFactory(case=case)
        if index % 3 == 0:
            services.case_claim(case=case, user=radiologist)
    many = _queries(client, url)
    assert many == few, (few, many)


def test_a_page_of_any_size_is_one_query(radiologist, django_assert_num_queries):
    for index in range(30):
        _ready(probability=index / 30)
    for size in (5, 30):
        with django_assert_num_queries(1):
            page = selectors.worklist_page(user=radiologist, size=size)
            assert [case.image_count for case in page.cases] == [1] * size


# --- the poll -------------------------------------------------------------------------------


def test_a_poll_that_finds_the_same_page_sends_no_rows_and_writes_no_audit_event(
    client_for, radiologist
):
    cases = [_ready(patient_id=f"MRN-{n}") for n in range(2)]
    client = client_for(radiologist)
    page = client.get(reverse("worklist"))
    version = page.context["page"].version
    (event,) = _listed(radiologist)
    assert sorted(event.subject_ids) == sorted(_ids(cases))
    for _ in range(10):
        answer = client.get(ROWS, {"since": version, "poll": "1"})
        assert set(answer.json()) == {"version", "changed", "now"}
        assert answer.json()["changed"] is False and b"MRN-" not in answer.content
    # Rows sent again (another tab, no version): the same cases, coalesced into the event.
    assert client.get(ROWS).json()["changed"] is True
    assert len(_listed(radiologist)) == 1


def test_a_new_case_reaches_the_poll_and_is_audited_once(client_for, radiologist):
    _ready()
    client = client_for(radiologist)
    version = client.get(reverse("worklist")).context["page"].version
    stat = _ready(urgency="stat", patient_id="MRN-STAT")
    answer = client.get(ROWS, {"since": version}).json()
    assert answer["changed"] is True and answer["version"] != version
    assert answer["html"].index(f'data-case-id="{stat.pk}"') < answer["html"].index("</tr>")
    assert "MRN-STAT" in answer["html"] and answer["count"] == 2 and answer["next"] is None
    assert len(_listed(radiologist)) == 2
    for _ in range(5):
        assert client.get(ROWS, {"since": answer["version"]}).json()["changed"] is False
    assert len(_listed(radiologist)) == 2


def test_a_claim_by_another_radiologist_changes_the_version(client_for, radiologist, radiologist2):
    case = _ready()
    client = client_for(radiologist)
    version = client.get(ROWS).json()["version"]
    services.case_claim(case=case, user=radiologist2)
    answer = client.get(ROWS, {"since": version}).json()
    assert answer["changed"] is True and "dr-radiologist2" in answer["html"]
    assert "claimed</span>" in answer["html"]


def test_the_api_answers_304_while_the_page_is_unchanged(api_client_for, radiologist):
    for probability in (0.9, 0.8, 0.7):
        _ready(probability=probability)
    client = api_client_for(radiologist)
    first = client.get("/api/v1/worklist/", {"limit": 2})
    assert len(first.json()) == 2 and 'rel="next"' in first["Link"]
    again = client.get("/api/v1/worklist/", {"limit": 2}, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and not again.content
    assert len(_listed(radiologist)) == 1
    next_url = first["Link"].split(">")[0].lstrip("<")
    rest = client.get(next_url)
    assert len(rest.json()) == 1 and "Link" not in rest


# --- claim next -----------------------------------------------------------------------------


def test_claim_next_takes_the_top_unclaimed_case_and_opens_it(
    client_for, radiologist, radiologist2
):
    taken = _ready(probability=0.99, urgency="stat")
    services.case_claim(case=taken, user=radiologist2)
    top = _ready(probability=0.2, urgency="stat")
    _ready(probability=0.9, urgency="urgent")
    response = client_for(radiologist).post(reverse("worklist_claim_next"))
    assert response.status_code == 302
    assert response.url == reverse("case_review", args=[top.pk])
    assert Case.objects.get(pk=top.pk).claimed_by == radiologist
    event = AuditEvent.objects.get(case=top, action=AuditEvent.Action.CLAIMED)
    assert (event.actor, event.detail) == (radiologist, "claim next")


def test_claim_next_follows_the_filters_and_the_sort(client_for, radiologist):
    now = timezone.now()
    _ready(probability=0.9, urgency="stat")
    routine_high = _ready(probability=0.8)
    routine_old = _waiting_since(_ready(probability=0.1), now - timedelta(hours=4))
    network = _ready(probability=0.3, source="dimse")
    client = client_for(radiologist)

    def claim_next(**form) -> int:
        response = client.post(reverse("worklist_claim_next"), form)
        return int(response.url.split("/")[2])

    assert claim_next(urgency="routine") == routine_high.pk
    assert claim_next(urgency="routine", sort="waiting") == routine_old.pk
    assert claim_next(source="dimse") == network.pk


def test_claim_next_says_so_when_nothing_matches(client_for, radiologist, radiologist2):
    case = _ready(urgency="urgent")
    services.case_claim(case=case, user=radiologist2)
    client = client_for(radiologist)
    response = client.post(reverse("worklist_claim_next"), {"urgency": "urgent"}, follow=True)
    assert response.redirect_chain[-1][0] == "/worklist/?urgency=urgent"
    assert b"No unclaimed case matches these filters." in response.content
    assert Case.objects.get(pk=case.pk).claimed_by == radiologist2


def test_claim_next_takes_the_following_case_when_another_took_the_top_one_first(
    monkeypatch, radiologist, radiologist2
):
    top = _ready(probability=0.9)
    following = _ready(probability=0.5)
    read = worklist.worklist_next_unclaimed
    raced: list[int] = []

    def racing(**filters):
        case_id = read(**filters)
        if not raced:  # the other radiologist's claim lands between the read and the update
            raced.append(case_id)
            services.case_claim(case=Case.objects.get(pk=case_id), user=radiologist2)
        return case_id

    monkeypatch.setattr(worklist, "worklist_next_unclaimed", racing)
    assert worklist.case_claim_next(user=radiologist) == following
    assert raced == [top.pk] and Case.objects.get(pk=top.pk).claimed_by == radiologist2


@pytest.mark.django_db(transaction=True)
def test_radiologists_claiming_next_at_the_same_moment_get_different_cases():
    cases = [_ready(probability=0.9 - n / 10) for n in range(4)]
    people = [factories.UserFactory(username=f"rad-{n}", role=roles.RADIOLOGIST) for n in range(4)]
    start = threading.Barrier(len(people))
    claimed: dict[str, int | None] = {}
    errors: list[BaseException] = []

    def claim(person) -> None:
        try:
            start.wait()
            case = worklist.case_claim_next(user=person)
            claimed[person.username] = case.pk if case else None
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(claimed.values()) == sorted(_ids(cases))
    owners = dict(Case.objects.values_list("pk", "claimed_by__username"))
    assert {owners[pk]: pk for pk in owners} == {name: pk for name, pk in claimed.items()}


def test_the_api_claims_next_and_answers_404_when_none_is_left(api_client_for, radiologist):
    case = _ready(urgency="urgent")
    client = api_client_for(radiologist)
    response = client.post("/api/v1/worklist/claim-next/?urgency=urgent")
    assert response.status_code == 200 and response.json()["id"] == case.pk
    assert response.json()["claimed_by"] == "dr-radiologist"
    again = client.post("/api/v1/worklist/claim-next/?urgency=urgent")
    assert again.status_code == 404 and "No unclaimed case" in again.json()["detail"]


def test_only_radiologists_poll_the_worklist_or_claim_next(client_for, api_client_for, clinician):
    _ready(owner=clinician)
    client = client_for(clinician)
    assert client.get(ROWS).status_code == 403
    assert client.post(reverse("worklist_claim_next")).status_code == 403
    assert api_client_for(clinician).post("/api/v1/worklist/claim-next/").status_code == 403
    assert not Case.objects.filter(claimed_by__isnull=False).exists()
