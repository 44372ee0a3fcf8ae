"""A permission denial is logged as one line with its reason, never a traceback; other
faults keep theirs."""

from __future__ import annotations

import logging
import sys

import pytest
from django.urls import reverse

from chestnet_site.log_filters import RefusalInOneLine


@pytest.mark.django_db
def test_a_refused_page_is_one_line_with_its_reason(client_for, clinician, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client_for(clinician).get(reverse("worklist"))
    assert response.status_code == 403
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is None and record.exc_text is None
    line = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
    expected = "Forbidden (Permission denied): /worklist/ (Only radiologists can do this.)"
    assert line == f"WARNING django.request {expected}"


def _record(exception: BaseException) -> logging.LogRecord:
    try:
        raise exception
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "django.request", logging.ERROR, __file__, 1, "Fault: %s", ("/x/",), exc_info
    )


def test_other_faults_keep_their_traceback():
    record = _record(RuntimeError("boom"))
    assert RefusalInOneLine().filter(record)
    assert "Traceback" in logging.Formatter().format(record)


def test_a_denial_without_a_sentence_is_the_bare_line():
    from django.core.exceptions import PermissionDenied

    record = _record(PermissionDenied())
    assert RefusalInOneLine().filter(record)
    assert logging.Formatter().format(record) == "Fault: /x/"
