#!/usr/bin/env python
"""The worklist at scale (`make benchmark`). Builds 100,000 cases (bulk_create, with their
images) in a throwaway database: SQLite under a temporary folder in CHESTNET_HOME, or, with
--database-url (or DATABASE_URL), a throwaway PostgreSQL database beside the one named
there (Django's test database, created and dropped here). Then measures, median (and p95)
of --runs:

- the first page and a deep page (90 % down the list) of every ordering: keyset (the
  product) beside OFFSET at the same depth (what it replaced);
- the HTTP endpoints as the browser and integrators call them: the page, the page's poll
  when nothing changed and when it did, the API (and its 304), and "claim next";
- SQL queries per request, for small and large pages.

Rewrites only its own part of docs/benchmarks.md (between the worklist-benchmark markers
of the database it ran on).

    .venv/bin/python scripts/worklist_benchmark.py [--cases 100000] [--runs 15]
        [--database-url postgres://...] [--no-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.benchmark_database import (  # noqa: E402
    database_description,
    machine_description,
    throwaway_database,
)
from devtools.reports import write_section  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
PAGE = 50
BATCH = 5000


def main() -> None:
    args = _arguments()
    with throwaway_database("worklist-benchmark", database_url=args.database_url, root=ROOT):
        from django.db import connection

        report = _run(args)
        backend = connection.vendor
    print(report)
    if not args.no_docs:
        _write_docs(report, backend=backend)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15, help="timed repetitions (median)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL server to run on (a throwaway test database is made there)",
    )
    parser.add_argument("--no-docs", action="store_true", help="print, do not edit the docs")
    return parser.parse_args()


# --- the data ---------------------------------------------------------------------------


def _populate(count: int, seed: int) -> Any:
    """`count` cases, 90 % awaiting review (2 % STAT, 15 % urgent), 5 % refused by the AI,
    30 % received over the network with a study time; one to four images each. Returns
    the radiologist who reads them."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from accounts import roles
    from diagnosis.models import Case, Image

    rng = random.Random(seed)
    users = get_user_model().objects
    owner = users.create(username="bench-clinician")
    reader = users.create(username="bench-radiologist")
    reader.groups.add(Group.objects.get_or_create(name=roles.RADIOLOGIST)[0])
    now = datetime.now(UTC)
    for start in range(0, count, BATCH):
        cases = [
            _case(rng, owner, number, now) for number in range(start, min(count, start + BATCH))
        ]
        Case.objects.bulk_create(cases)
        Image.objects.bulk_create([image for case in cases for image in _images(rng, case)])
    # created_at is set on insert; uploads show it as their study time: spread it out.
    from django.db.models import F

    Case.objects.update(created_at=F("ready_at") - timedelta(minutes=3))
    return reader


def _case(rng: random.Random, owner: Any, number: int, now: datetime) -> Any:
    from diagnosis.models import Case

    refused = rng.random() < 0.05
    probability = None if refused else rng.random()
    ready = now - timedelta(seconds=rng.randint(60, 30 * 86400))
    network = rng.random() < 0.3
    return Case(
        owner=owner,
        patient_id=f"MRN-{number:07d}",
        age=rng.randint(1, 5),
        sex=rng.choice("FM"),
        urgency=rng.choices(["stat", "urgent", "routine"], weights=[2, 15, 83])[0],
        status=Case.Status.AWAITING_REVIEW if rng.random() < 0.9 else Case.Status.REPORTED,
        max_probability=probability,
        ai_flagged=probability is not None and probability >= 0.5,
        ready_at=ready,
        source=Case.Source.DIMSE if network else Case.Source.UPLOAD,
        source_ae="ORTHANC" if network else "",
        study_instance_uid=f"1.2.826.0.1.3680043.99.{number}" if network else "",
        accession_number=f"ACC-{number:07d}" if network else "",
        study_at=ready - timedelta(minutes=rng.randint(2, 240)) if network else None,
    )


def _images(rng: random.Random, case: Any) -> list[Any]:
    from diagnosis.models import Image

    refused = case.max_probability is None
    return [
        Image(
            case=case,
            original=f"originals/{case.pk}-{n}.bin",
            original_format="png",
            preview=f"previews/{case.pk}-{n}.png",
            status=Image.Status.REFUSED if refused else Image.Status.DONE,
            refusal_reason="not_chest_radiograph" if refused else "",
            result_at=case.ready_at,
        )
        for n in range(rng.choice([1, 1, 1, 2, 4]))
    ]


# --- measuring --------------------------------------------------------------------------


def _timed(action: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median and p95 in ms, after one warm-up call."""
    action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def _queries(action: Callable[[], Any]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured.captured_queries)


def _run(args: argparse.Namespace) -> str:
    from diagnosis import selectors
    from diagnosis.models import Case

    started = time.perf_counter()
    reader = _populate(args.cases, args.seed)
    built = time.perf_counter() - started
    waiting = Case.objects.filter(status=Case.Status.AWAITING_REVIEW).count()
    depth = int(waiting * 0.9) // PAGE * PAGE
    lines = [
        _machine(args, built, waiting),
        "",
        f"Selectors, {PAGE} rows a page; the deep page starts at row {depth:,}. Milliseconds, "
        "median / p95.",
        "",
        "| Ordering | first page | deep page, keyset | deep page, OFFSET | SQL (keyset) |",
        "|---|---|---|---|---|",
    ]
    for sort in selectors.WORKLIST_SORTS:
        lines.append(_sort_row(reader, sort, depth, args.runs))
    lines += ["", _plan(reader, depth), ""]
    lines += _http(reader, depth, args.runs)
    lines.append("")
    lines.append(_page_sizes(reader))
    return "\n".join(lines).rstrip() + "\n"


def _sort_row(reader: Any, sort: str, depth: int, runs: int) -> str:
    from diagnosis import selectors

    order = selectors.WORKLIST_SORTS[sort]
    cursor = _cursor_at(reader, sort, depth)

    def first() -> None:
        selectors.worklist_page(user=reader, sort=sort, size=PAGE)

    def keyset() -> None:
        selectors.worklist_page(user=reader, sort=sort, after=cursor, size=PAGE)

    def offset() -> None:
        list(selectors.worklist_for(user=reader, sort=sort)[depth : depth + PAGE + 1])

    same = [c.pk for c in selectors.worklist_page(user=reader, sort=sort, after=cursor).cases]
    assert same == [
        c.pk for c in selectors.worklist_for(user=reader, sort=sort)[depth : depth + PAGE]
    ]
    cells = [_ms(_timed(step, runs)) for step in (first, keyset, offset)]
    return f"| {order.label} | {' | '.join(cells)} | {_queries(keyset)} query |"


def _cursor_at(reader: Any, sort: str, depth: int) -> str:
    """The cursor a reader paging down would hold at row `depth`."""
    from diagnosis import selectors

    last = selectors.worklist_for(user=reader, sort=sort)[depth - 1]
    return selectors.cursor_encode(last, selectors.WORKLIST_SORTS[sort])


def _plan(reader: Any, depth: int) -> str:
    """How the database finds the default ordering's deep page (its own words)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from diagnosis import selectors

    cursor = _cursor_at(reader, "priority", depth)
    with CaptureQueriesContext(connection) as captured:
        selectors.worklist_page(user=reader, after=cursor, size=PAGE)
    sql = captured.captured_queries[-1]["sql"]
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as db:
        db.execute(explain + sql)
        plan = [str(row[-1]) for row in db.fetchall()]
    index = next((n for n, line in enumerate(plan) if "case_worklist_priority" in line), None)
    if index is None:
        return "Plan of the deep keyset page (priority order): the index is not used."
    shown = (
        plan[index : index + 2]
        if "Index Cond" in "".join(plan[index + 1 : index + 2])
        else [plan[index]]
    )
    return (
        "Plan of the deep keyset page (priority order): "
        + "; ".join(f"`{_plan_line(line)}`" for line in shown)
        + "."
    )


def _plan_line(line: str) -> str:
    return re.sub(r"\s+\(cost=[^)]*\)", "", line).strip().removeprefix("->").strip()


def _http(reader: Any, depth: int, runs: int) -> list[str]:
    from django.test import Client

    from diagnosis import selectors

    client = Client()
    client.force_login(reader)
    version = selectors.worklist_page(user=reader).version
    cursor = _cursor_at(reader, "priority", depth)
    etag = client.get("/api/v1/worklist/", {"limit": PAGE})["ETag"]
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("`GET /worklist/` (the page, first rows)", lambda: client.get("/worklist/")),
        (
            "`GET /worklist/?after=…` (the deep page)",
            lambda: client.get("/worklist/", {"after": cursor}),
        ),
        (
            "`GET /worklist/rows/?since=…` (poll, nothing changed)",
            lambda: client.get("/worklist/rows/", {"since": version, "poll": "1"}),
        ),
        (
            "`GET /worklist/rows/` (poll, rows changed: rendered)",
            lambda: client.get("/worklist/rows/", {"poll": "1"}),
        ),
        (
            f"`GET /api/v1/worklist/?limit={PAGE}`",
            lambda: client.get("/api/v1/worklist/", {"limit": PAGE}),
        ),
        (
            "`GET /api/v1/worklist/` with `If-None-Match` (304)",
            lambda: client.get("/api/v1/worklist/", {"limit": PAGE}, HTTP_IF_NONE_MATCH=etag),
        ),
        ("`POST /worklist/claim-next/`", lambda: client.post("/worklist/claim-next/")),
    ]
    lines = [
        "Over HTTP (Django's test client: middleware, session, audit, rendering; no network). "
        "Milliseconds.",
        "",
        "| Request | median | p95 | SQL queries |",
        "|---|---|---|---|",
    ]
    for label, call in calls:
        assert call().status_code in (200, 302, 304), label
        median, p95 = _timed(call, runs)
        lines.append(f"| {label} | {median:.1f} | {p95:.1f} | {_queries(call)} |")
    return lines


def _page_sizes(reader: Any) -> str:
    from diagnosis import selectors

    counts = {
        size: _queries(lambda size=size: selectors.worklist_page(user=reader, size=size))
        for size in (10, 50, 200)
    }
    shown = ", ".join(f"{count} with {size} rows" for size, count in counts.items())
    return f"SQL queries for one page (image counts and refusals included): {shown}."


def _ms(timing: tuple[float, float]) -> str:
    return f"{timing[0]:.1f} / {timing[1]:.1f}"


def _machine(args: argparse.Namespace, built: float, waiting: int) -> str:
    import django

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Generated by `scripts/worklist_benchmark.py --cases {args.cases} --runs {args.runs}` "
        f"on {machine_description()}, load average "
        f"{load:.1f} at the start; Python {platform.python_version()}, Django "
        f"{django.get_version()}, {database_description()}; {when}. {args.cases:,} cases "
        f"({waiting:,} awaiting review) built in {built:.0f} s."
    )


def _write_docs(report: str, *, backend: str) -> None:
    start, end = (
        f"<!-- worklist-benchmark:{backend}:start -->",
        f"<!-- worklist-benchmark:{backend}:end -->",
    )
    write_section(DOCS, f"{start}\n{report}{end}", start=start, end=end)


if __name__ == "__main__":
    main()
