#!/usr/bin/env python
"""Monitoring at scale (`make benchmark`). Builds a site's analysed images for one active
model version (bulk_create: cases, images with their acquisition facts, predictions,
refusals and signed reports, spread over the last 90 days) in a throwaway database: SQLite
under a temporary folder in CHESTNET_HOME, or, with --database-url (or DATABASE_URL), a
throwaway PostgreSQL database beside the one named there (Django's test database, created
and dropped here). Then measures, median (and p95) of --runs, at each of --sizes (the
images are added to, so the smaller site is the first part of the larger one):

- the monitoring API and page, by week and by day (the default spans), as an admin;
- `/metrics` as Prometheus reads it (an allow-listed address, no session), and the
  beat's `alerts_check()`;
- SQL queries per request, the API's peak memory (tracemalloc, and the process's
  ru_maxrss growth on its first call), and where the API's time goes: the SQL alone,
  the outcome rows built from it, and the figures.

Rewrites only its own part of docs/benchmarks.md (between the monitoring-benchmark markers
of the database it ran on). `--profile` prints cProfile's view of `/metrics` and the API
at the largest size.

    .venv/bin/python scripts/monitoring_benchmark.py [--sizes 5000,50000] [--runs 7]
        [--database-url postgres://...] [--no-docs] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import platform
import pstats
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
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
HEADING = "## Monitoring at scale (`python scripts/monitoring_benchmark.py`)"
VERSION = "bench-site-1"
THRESHOLD = 0.5
DAYS = 90
BATCH = 2000
SCRAPE_S = 15  # a common Prometheus scrape interval
PNEUMONIA_SHARE = 0.35  # of cases
# The model's scores: Beta distributions by the case's truth (sensitivity about 0.95 and
# specificity about 0.93 at the threshold: a version that passes its alert floors).
SCORES = {True: (7.0, 1.8), False: (1.5, 5.0)}


def main() -> None:
    args = _arguments()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with throwaway_database("monitoring-benchmark", database_url=args.database_url, root=ROOT):
        from django.db import connection

        logging.getLogger("axes").setLevel(logging.WARNING)  # a line per force_login otherwise
        report = _run(args, load)
        backend = connection.vendor
    print(report)
    if not args.no_docs:
        _write_docs(report, backend=backend)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outcomes", type=int, default=50_000, help="images (one size)")
    parser.add_argument("--sizes", default="", help="comma-separated image counts, e.g. 5000,50000")
    parser.add_argument("--runs", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL server to run on (a throwaway test database is made there)",
    )
    parser.add_argument("--no-docs", action="store_true", help="print, do not edit the docs")
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile of /metrics and the API"
    )
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    args.sizes = sorted(set(sizes or [args.outcomes]))
    if args.sizes[0] <= 0 or args.runs <= 0:
        parser.error("sizes and runs must be positive")
    return args


# --- the data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sender:
    """Where images come from, with the scanners behind it: (modality, manufacturer,
    bits stored, longer side) and their weights."""

    source: str
    ae: str
    share: float
    scanners: list[tuple[str, str, int, int]]
    weights: list[float]


SENDERS = [
    # Browser uploads: DICOM files from the ward's scanners, and exported PNGs without a
    # header (no modality or manufacturer: "unknown").
    Sender(
        "upload",
        "",
        0.5,
        [("DX", "Acme Imaging", 14, 3000), ("CR", "Nordic X-ray", 12, 2400), ("", "", 8, 1024)],
        [0.35, 0.35, 0.30],
    ),
    Sender("dimse", "XR_ROOM1", 0.35, [("DX", "Acme Imaging", 14, 3000)], [1.0]),
    Sender(
        "dimse",
        "XR_ROOM2",
        0.15,
        [("CR", "Zeta Medical", 12, 2500), ("CR", "Nordic X-ray", 12, 2400)],
        [0.7, 0.3],
    ),
]
REFUSALS = (
    ["not_chest_radiograph", "outside_intended_use", "unreadable", "unsupported"],
    [0.5, 0.35, 0.1, 0.05],
)


@dataclass
class Site:
    """The people and the version the images belong to, and how many are built so far."""

    owner: Any
    reader: Any
    admin: Any
    version: Any
    rng: random.Random
    now: datetime
    images: int = 0
    cases: int = 0
    signed: int = 0
    refused: int = 0


def _site(seed: int) -> Site:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from accounts import roles
    from registry.models import ModelVersion

    users = get_user_model().objects
    owner = users.create(username="bench-clinician")
    owner.groups.add(Group.objects.get_or_create(name=roles.CLINICIAN)[0])
    reader = users.create(username="bench-radiologist")
    reader.groups.add(Group.objects.get_or_create(name=roles.RADIOLOGIST)[0])
    admin = users.create(username="bench-admin", is_staff=True)
    admin.groups.add(Group.objects.get_or_create(name=roles.ADMIN)[0])
    ModelVersion.objects.filter(is_active=True).update(is_active=False)
    card = {
        "version": VERSION,
        "threshold": THRESHOLD,
        "validation": {
            "calibration": [
                {"low": i / 10, "high": (i + 1) / 10, "count": c}
                for i, c in enumerate(_reference_counts())
            ]
        },
    }
    version = ModelVersion.objects.create(
        version=VERSION,
        origin=ModelVersion.Origin.SHIPPED,
        artifact=f"models/{VERSION}.keras",
        card_file=f"models/{VERSION}.json",
        card=card,
        sha256="0" * 64,
        is_active=True,
        active_threshold=THRESHOLD,
        activated_at=datetime.now(UTC) - timedelta(days=DAYS + 1),
    )
    return Site(owner, reader, admin, version, random.Random(seed), datetime.now(UTC))


def _reference_counts(samples: int = 20_000) -> list[int]:
    """The card's validation calibration counts (the drift figures' score reference): the
    same score distribution the site's images get, so drift stays near zero."""
    rng = random.Random(0)
    counts = [0] * 10
    for _ in range(samples):
        score = rng.betavariate(*SCORES[rng.random() < PNEUMONIA_SHARE])
        counts[min(int(score * 10), 9)] += 1
    return counts


@contextlib.contextmanager
def _own_timestamps(*models: Any) -> Iterator[None]:
    """Let bulk_create store the `created_at` given (auto_now_add would write now): the
    images must be spread over 90 days. In this process only, for the seeding."""
    fields = [model._meta.get_field("created_at") for model in models]
    for f in fields:
        f.auto_now_add = False
    try:
        yield
    finally:
        for f in fields:
            f.auto_now_add = True


def _grow(site: Site, target: int) -> None:
    """Add cases until the site holds `target` analysed or refused images. On PostgreSQL
    the tables' statistics are then refreshed, as autovacuum does on a live server soon
    after such a change (SQLite keeps none unless asked, and `make run` does not ask)."""
    from django.db import connection

    from diagnosis.models import Case, Image, Prediction

    with _own_timestamps(Case, Image, Prediction):
        while site.images < target:
            _batch(site, min(BATCH, target - site.images))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def _batch(site: Site, images_wanted: int) -> None:
    """One batch of cases with about `images_wanted` images: 80 % of cases one image, 20 %
    two; 3 % of images refused; 60 % of cases signed, 2 % of those amended once."""
    from diagnosis.models import Case, Image, Prediction, Review

    rng = site.rng
    plans = []
    while images_wanted > 0:
        count = min(images_wanted, 1 if rng.random() < 0.8 else 2)
        plans.append(_case_plan(site, count))
        images_wanted -= count
    Case.objects.bulk_create([plan["case"] for plan in plans])
    for plan in plans:
        for image in plan["images"]:
            image.case = plan["case"]
    Image.objects.bulk_create([image for plan in plans for image in plan["images"]])
    for plan in plans:
        for image, prediction in zip(plan["images"], plan["predictions"], strict=True):
            if prediction is not None:
                prediction.image = image
    Prediction.objects.bulk_create([p for plan in plans for p in plan["predictions"] if p])
    # Reviews are append-only: rows are added (never updated), as review_sign adds them.
    Review.objects.bulk_create([r for plan in plans for r in _reviews(site, plan)])


def _case_plan(site: Site, count: int) -> dict[str, Any]:
    from diagnosis.models import Case

    rng = site.rng
    site.cases += 1
    number = site.cases
    sender = rng.choices(SENDERS, weights=[s.share for s in SENDERS])[0]
    at = site.now - timedelta(seconds=rng.uniform(600, DAYS * 86400))
    pneumonia = rng.random() < PNEUMONIA_SHARE
    images, predictions = [], []
    for n in range(count):
        image, prediction = _image(site, sender, at + timedelta(seconds=20 * n), pneumonia)
        images.append(image)
        predictions.append(prediction)
    scores = [p.probability for p in predictions if p is not None]
    signed = rng.random() < 0.6
    network = sender.source != "upload"
    case = Case(
        owner=site.owner,
        patient_id=f"MRN-{number:07d}",
        age=rng.randint(1, 5),
        sex=rng.choice("FM"),
        urgency=rng.choices(["stat", "urgent", "routine"], weights=[2, 15, 83])[0],
        status=Case.Status.REPORTED if signed else Case.Status.AWAITING_REVIEW,
        max_probability=max(scores) if scores else None,
        ai_flagged=any(score >= THRESHOLD for score in scores),
        created_at=at - timedelta(minutes=2),
        ready_at=at + timedelta(seconds=30),
        source=sender.source,
        source_ae=sender.ae,
        study_instance_uid=f"1.2.826.0.1.3680043.77.{number}" if network else "",
        accession_number=f"ACC-{number:07d}" if network else "",
        study_at=at - timedelta(minutes=rng.randint(5, 120)) if network else None,
        claimed_by=site.reader if signed else None,
        claimed_at=at + timedelta(minutes=5) if signed else None,
        report_owner=site.reader if signed else None,
    )
    return {
        "case": case,
        "images": images,
        "predictions": predictions,
        "signed": signed,
        "pneumonia": pneumonia,
        "at": at,
    }


def _image(site: Site, sender: Sender, at: datetime, pneumonia: bool) -> tuple[Any, Any]:
    from diagnosis.models import Image, Prediction

    rng = site.rng
    modality, manufacturer, bits, side = rng.choices(sender.scanners, weights=sender.weights)[0]
    refused = rng.random() < 0.03
    site.images += 1
    site.refused += refused
    reason = rng.choices(*REFUSALS)[0] if refused else ""
    longer = side + rng.randint(-200, 200)
    image = Image(
        original=f"originals/bench-{site.images}.bin",
        original_format="png" if not modality else "dicom",
        status=Image.Status.REFUSED if refused else Image.Status.DONE,
        refusal_reason=reason,
        refusal_message="Refused in the benchmark." if refused else "",
        refusal_model_version=VERSION if refused else "",
        enqueued_at=at - timedelta(seconds=40),
        claimed_at=at - timedelta(seconds=2),
        created_at=at - timedelta(seconds=60),
        result_at=at,
        name="PA chest",
        modality=modality,
        manufacturer=manufacturer,
        width=int(longer * 0.85),
        height=longer,
        bits_stored=bits,
        view_position="PA" if modality else "",
    )
    if refused:
        return image, None
    # A reasonable model: scores high for pneumonia, low for normal, with overlap.
    probability = rng.betavariate(*SCORES[pneumonia])
    prediction = Prediction(
        probability=probability,
        label="PNEUMONIA" if probability >= THRESHOLD else "NORMAL",
        threshold=THRESHOLD,
        model_version=VERSION,
        heatmap=f"heatmaps/bench-{site.images}.png",
        timings={"decode": 110.0, "forward": 40.0, "worker_total": 180.0 + 60 * rng.random()},
        created_at=at,
    )
    return image, prediction


def _reviews(site: Site, plan: dict[str, Any]) -> list[Any]:
    """The signed report of a case (version 1, and now and then an amendment), with the
    AI results it was signed against, as diagnosis.services.review_sign writes them."""
    from diagnosis.models import Review

    if not plan["signed"]:
        return []
    rng = site.rng
    site.signed += 1
    truth = "pneumonia" if plan["pneumonia"] else "normal"
    finding = rng.choices([truth, "other", "indeterminate"], weights=[94, 3, 3])[0]
    results, flagged = [], False
    for image, prediction in zip(plan["images"], plan["predictions"], strict=True):
        entry: dict[str, Any] = {"image": image.pk, "status": image.status}
        if prediction is None:
            entry.update(refusal_reason=image.refusal_reason, model_version=VERSION)
        else:
            entry.update(prediction.verdict(), prediction_id=prediction.pk)
            flagged = flagged or prediction.is_flagged
        results.append(entry)
    analysed = any(p is not None for p in plan["predictions"])
    agrees = (finding == "pneumonia") == flagged if analysed else None
    for entry in results:
        if "prediction_id" in entry:
            entry["agrees"] = agrees
    signed_at = plan["at"] + timedelta(minutes=rng.randint(10, 24 * 60))
    reviews = [
        Review(
            case=plan["case"],
            version=1,
            author=site.reader,
            agrees_with_ai=agrees,
            finding=finding,
            report="Signed in the monitoring benchmark.",
            ai_results=results,
            signed_at=signed_at,
        )
    ]
    if rng.random() < 0.02:
        finding = rng.choice(["normal", "pneumonia"])
        reviews.append(
            Review(
                case=plan["case"],
                version=2,
                author=site.reader,
                agrees_with_ai=(finding == "pneumonia") == flagged if analysed else None,
                finding=finding,
                report="Amended in the monitoring benchmark.",
                amendment_reason="Second reading.",
                ai_results=results,
                signed_at=signed_at + timedelta(hours=6),
            )
        )
    return reviews


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


def _queries(action: Callable[[], Any]) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        action()
    return [query["sql"] for query in captured.captured_queries]


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _traced_peak_mib(action: Callable[[], Any]) -> float:
    """The most Python memory the call held at once beyond what was held before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - before) / 2**20


@dataclass
class Measured:
    """One size's figures: per request (median, p95, queries), memory and the API's split."""

    size: int
    built_s: float
    signed_share: float
    timings: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    split: dict[str, tuple[float, float]] = field(default_factory=dict)


# What is timed: key, and the label of its row.
REQUESTS = [
    ("api_week", "`GET /api/v1/monitoring/?version=…&period=week` (8 weeks)"),
    ("api_day", "`GET /api/v1/monitoring/?version=…&period=day` (14 days)"),
    ("page_week", "`GET /monitoring/?version=…&period=week` (the page)"),
    ("page_day", "`GET /monitoring/?version=…&period=day`"),
    ("metrics", "`GET /metrics` (allow-listed address, no session)"),
    ("alerts", "`alerts_check()` (beat, every 300 s)"),
]


def _calls(site: Site) -> dict[str, Callable[[], Any]]:
    """The calls of REQUESTS: the pages and the API as a signed-in admin, /metrics as
    Prometheus reads it, the alert check as beat runs it."""
    from django.test import Client, override_settings

    from monitoring import alerts

    client = Client()
    client.force_login(site.admin)
    scraper = Client(enforce_csrf_checks=True)  # as Prometheus: no session
    version = site.version.version

    def scrape() -> Any:
        # The allow-list rule, as tests/monitoring/test_prometheus_metrics.py uses it.
        with override_settings(
            CHESTNET_METRICS_TOKEN="", CHESTNET_METRICS_ALLOWED_IPS=["127.0.0.1"]
        ):
            response = scraper.get("/metrics", REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 200, response.content[:200]
        return response

    def get(url: str, period: str) -> Callable[[], Any]:
        def call() -> Any:
            response = client.get(url, {"version": version, "period": period})
            assert response.status_code == 200, (url, response.status_code)
            return response

        return call

    return {
        "api_week": get("/api/v1/monitoring/", "week"),
        "api_day": get("/api/v1/monitoring/", "day"),
        "page_week": get("/monitoring/", "week"),
        "page_day": get("/monitoring/", "day"),
        "metrics": scrape,
        "alerts": alerts.alerts_check,
    }


def _measure(
    site: Site, calls: dict[str, Callable[[], Any]], runs: int, built_s: float
) -> Measured:
    analysed = site.images - site.refused
    measured = Measured(site.images, built_s, site.signed / max(site.cases, 1))
    rss_before = _max_rss_mib()
    calls["api_week"]()  # the first call at this size: the process's high-water mark
    measured.memory["rss_growth"] = max(0.0, _max_rss_mib() - rss_before)
    measured.memory["api_traced"] = _traced_peak_mib(calls["api_week"])
    measured.memory["metrics_traced"] = _traced_peak_mib(calls["metrics"])
    for key, call in calls.items():
        median, p95 = _timed(call, runs)
        measured.timings[key] = (median, p95, len(_queries(call)))
    measured.split = _api_split(site, runs)
    api_ms, metrics_ms = measured.timings["api_week"][0], measured.timings["metrics"][0]
    print(
        f"{site.images:,} images ({analysed:,} analysed): API {api_ms:.0f} ms, "
        f"/metrics {metrics_ms:.0f} ms",
        file=sys.stderr,
    )
    return measured


def _api_split(site: Site, runs: int) -> dict[str, tuple[float, float]]:
    """Where the API's time goes: its two reads alone (the span's outcomes and the counted
    input baseline, executed and every row fetched, no ORM), those reads through the
    selectors (outcome rows), `report()` (that and the figures), and the alert figures
    /metrics computes."""
    from django.db import connection
    from django.utils import timezone

    from diagnosis import selectors as clinical
    from monitoring import alerts, selectors

    query = selectors.query_from({"version": site.version.version, "period": "week"})
    since = timezone.make_aware(datetime.combine(query.start, dt_time.min))
    until = timezone.make_aware(datetime.combine(query.end + timedelta(days=1), dt_time.min))

    def reads() -> None:
        clinical.image_outcomes(since=since, until=until, model_version=VERSION)
        clinical.input_facts_counted(until=since, model_version=VERSION)

    sql = _queries(reads)

    def raw() -> None:
        with connection.cursor() as cursor:
            for statement in sql:
                cursor.execute(statement)
                cursor.fetchall()

    return {
        "sql": _timed(raw, runs),
        "outcomes": _timed(reads, runs),
        "report": _timed(lambda: selectors.report(query), runs),
        "checks": _timed(lambda: alerts.checks_for(VERSION, site.version.card), runs),
    }


def _profile(site: Site, calls: dict[str, Callable[[], Any]]) -> str:
    """cProfile of one /metrics scrape and one API call: the top functions by own and
    cumulative time."""
    out = io.StringIO()
    for key, label in REQUESTS:
        if key not in ("metrics", "api_week"):
            continue
        profiler = cProfile.Profile()
        profiler.runcall(calls[key])
        out.write(f"\n## cProfile: {label} at {site.images:,} images\n")
        stats = pstats.Stats(profiler, stream=out)
        # The product's own functions by cumulative time, then everything by own time.
        stats.sort_stats("cumulative").print_stats(r"/(monitoring|diagnosis|registry)/", 20)
        stats.strip_dirs().sort_stats("tottime").print_stats(15)
    return out.getvalue()


# --- the report -------------------------------------------------------------------------


def _run(args: argparse.Namespace, load: float) -> str:
    site = _site(args.seed)
    calls = _calls(site)
    results = []
    for size in args.sizes:
        started = time.perf_counter()
        _grow(site, size)
        results.append(_measure(site, calls, args.runs, time.perf_counter() - started))
    if args.profile:
        print(_profile(site, calls), file=sys.stderr)
    return _render(args, results, load)


def _render(args: argparse.Namespace, results: list[Measured], load: float) -> str:
    sizes = " / ".join(f"{m.size:,}" for m in results)
    lines = [
        _machine(args, load, results),
        "",
        f"Milliseconds, median / p95 of {args.runs}, at {sizes} images (Django's test client: "
        "middleware, session, rendering; no network). SQL: queries per request.",
        "",
        "| Request | "
        + " | ".join(f"{m.size:,} images" for m in results)
        + " | SQL |"
        + (" × (last / first median) |" if len(results) > 1 else ""),
        "|---|" + "---|" * len(results) + "---|" + ("---|" if len(results) > 1 else ""),
    ]
    for key, label in REQUESTS:
        cells = [f"{m.timings[key][0]:.0f} / {m.timings[key][1]:.0f}" for m in results]
        queries = " / ".join(str(m.timings[key][2]) for m in results)
        row = f"| {label} | {' | '.join(cells)} | {queries} |"
        if len(results) > 1:
            row += f" {results[-1].timings[key][0] / results[0].timings[key][0]:.1f} |"
        lines.append(row)
    lines += ["", *_split_table(results), "", *_memory_lines(results), "", _scrape_line(results)]
    return "\n".join(lines).rstrip() + "\n"


def _split_table(results: list[Measured]) -> list[str]:
    parts = [
        (
            "sql",
            "its two reads alone (the span's outcomes, the counted baseline; every row fetched)",
        ),
        ("outcomes", "`image_outcomes()` and `input_facts_counted()`: those reads, outcome rows"),
        ("report", "`monitoring.selectors.report()`: that, and the figures"),
        ("checks", "`alerts.checks_for()`: the alert figures (/metrics, beat)"),
    ]
    lines = [
        "Where the API's time goes (the week query, called directly). Milliseconds, median / p95.",
        "",
        "| Part | " + " | ".join(f"{m.size:,} images" for m in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for key, label in parts:
        cells = [f"{m.split[key][0]:.0f} / {m.split[key][1]:.0f}" for m in results]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def _memory_lines(results: list[Measured]) -> list[str]:
    return [
        "Memory (MiB): the most Python memory one call held at once (tracemalloc peak), and "
        "the process's resident high-water mark (ru_maxrss) growth on the first API call "
        "at that size.",
        "",
        "| Images | API (week), traced peak | `/metrics`, traced peak | ru_maxrss growth |",
        "|---|---|---|---|",
        *(
            f"| {m.size:,} | {m.memory['api_traced']:.0f} | {m.memory['metrics_traced']:.0f} "
            f"| {m.memory['rss_growth']:.0f} |"
            for m in results
        ),
    ]


def _scrape_line(results: list[Measured]) -> str:
    last = results[-1]
    metrics_ms = last.timings["metrics"][0]
    return (
        f"At a {SCRAPE_S} s scrape interval, `/metrics` at {last.size:,} images takes "
        f"{metrics_ms:.0f} ms of every {SCRAPE_S} s: {metrics_ms / (SCRAPE_S * 10):.1f} % of "
        f"one web process's time per Prometheus server scraping it."
    )


def _machine(args: argparse.Namespace, load: float, results: list[Measured]) -> str:
    import django

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sizes = ",".join(str(m.size) for m in results)
    built = ", ".join(f"{m.size:,} in {m.built_s:.0f} s" for m in results)
    last = results[-1]
    return (
        f"Generated by `scripts/monitoring_benchmark.py --sizes {sizes} --runs {args.runs}` "
        f"on {machine_description()}, load average {load:.1f} at the start; Python "
        f"{platform.python_version()}, Django {django.get_version()}, "
        f"{database_description()}; {when}. One active version, images spread over "
        f"the last {DAYS} days from an upload route and two DICOM senders (CR and DX, three "
        f"manufacturers and header-less PNGs), about 3 % refused, "
        f"{last.signed_share:.0%} of cases signed; images added ({built})."
    )


def _write_docs(report: str, *, backend: str) -> None:
    start, end = (
        f"<!-- monitoring-benchmark:{backend}:start -->",
        f"<!-- monitoring-benchmark:{backend}:end -->",
    )
    heading = "" if HEADING in DOCS.read_text() else HEADING
    write_section(DOCS, f"{start}\n{report}{end}", start=start, end=end, heading=heading)


if __name__ == "__main__":
    main()
