"""What `/metrics` tells the hospital's Prometheus, counted in the database at each scrape.

The web processes, the workers and the DICOM listener are separate processes, often on
separate hosts, so a counter kept in one process's memory would count that process alone;
every figure here is a query instead, read through a private registry (never the global
one, which would also expose this process's own internals). Labels are model versions,
refusal reasons and states: never patient data. Clinical and outbox tables are read
through `apps.get_model`, so this floor imports no app's models.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.models import Count, FloatField, Model, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.db.models.lookups import LessThanOrEqual
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from registry.selectors import active_model

logger = logging.getLogger(__name__)

# Upper bounds, in seconds, of the latency histogram: one image's wall time in the worker.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# The columns of one version's latency row: cumulative buckets, +Inf (rows with a time), sum.
_BUCKETS = tuple(f"le{index}" for index in range(len(LATENCY_BUCKETS_S)))
_LATENCY_FIGURES = (*_BUCKETS, "timed", "sum_ms")

BUILT_IN = {
    "chestnet_images_analysed",
    "chestnet_images_refused",
    "chestnet_images_failed",
    "chestnet_inference_latency_seconds",
    "chestnet_queue_depth",
    "chestnet_pacs_outbox",
    "chestnet_pacs_outbox_failures",
    "chestnet_active_model_info",
}
_SUFFIXES = re.compile(r"_(total|created|bucket|sum|count)$")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# (name, help, labels, value): one sample of a gauge another app adds (monitoring figures).
GaugeSample = tuple[str, str, dict[str, str], float]
GaugeSource = Callable[[], Iterable[GaugeSample]]
_SOURCES: list[GaugeSource] = []


def gauge_source_register(source: GaugeSource) -> GaugeSource:
    """Expose what `source()` returns as gauges at every scrape (samples of one name form
    one gauge). Call it from an AppConfig.ready(); the labels must hold no patient data.
    Returns `source`, so it also serves as a decorator."""
    if source not in _SOURCES:
        _SOURCES.append(source)
    return source


def gauge_source_unregister(source: GaugeSource) -> None:
    if source in _SOURCES:
        _SOURCES.remove(source)


def exposition() -> bytes:
    """The Prometheus text format of every figure; a database fault propagates."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    return generate_latest(registry)


class DatabaseCollector:
    """Each scrape's figures, from about seven aggregate queries."""

    def collect(self) -> Iterator[Metric]:
        yield from _analysed()
        yield from _images()
        yield from _outbox()
        yield _active_model()
        yield from _gauges_from_sources()


# --- analyses ----------------------------------------------------------------------------


def _analysed() -> Iterator[Metric]:
    """Analyses by model version and their latency. Predictions a re-analysis replaced
    (PriorPrediction) still count, so a re-analysis never lowers a counter."""
    counts: dict[str, int] = defaultdict(int)
    histograms: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(_LATENCY_FIGURES))
    for model_name in ("Prediction", "PriorPrediction"):
        for row in _latency_rows(apps.get_model("diagnosis", model_name)):
            counts[row["model_version"]] += row["rows"]
            figures = histograms[row["model_version"]]
            for index, key in enumerate(_LATENCY_FIGURES):
                figures[index] += row[key] or 0
    analysed = CounterMetricFamily(
        "chestnet_images_analysed",
        "Analyses stored (a re-analysed image counts again), by model version.",
        labels=["model_version"],
    )
    for version, count in sorted(counts.items()):
        analysed.add_metric([version], count)
    yield analysed
    yield _latency_histogram(histograms)


def _latency_ms() -> Coalesce:
    """An analysis's wall time in the worker (ms): `worker_total`, else the model's `total`
    (rows stored before the worker timed itself)."""

    def key(name: str) -> Cast:
        return Cast(KeyTextTransform(name, "timings"), FloatField())

    return Coalesce(key("worker_total"), key("total"))


def _latency_rows(model: type[Model]) -> list[dict[str, Any]]:
    """One aggregate query: per model version, the rows, the cumulative bucket counts, the
    count and the sum (ms) of the rows that have a time."""
    milliseconds = _latency_ms()
    buckets = {
        key: Count("pk", filter=LessThanOrEqual(milliseconds, bound * 1000))
        for key, bound in zip(_BUCKETS, LATENCY_BUCKETS_S, strict=True)
    }
    return list(
        model._default_manager.order_by()
        .values("model_version")
        .annotate(rows=Count("pk"), **buckets, timed=Count(milliseconds), sum_ms=Sum(milliseconds))
    )


def _latency_histogram(histograms: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "chestnet_inference_latency_seconds",
        "Wall time of one image's analysis in the worker, by model version.",
        labels=["model_version"],
    )
    bounds = [floatToGoString(bound) for bound in LATENCY_BUCKETS_S] + ["+Inf"]
    for version, figures in sorted(histograms.items()):
        *cumulative, total_ms = figures
        family.add_metric([version], list(zip(bounds, cumulative, strict=True)), total_ms / 1000)
    return family


# --- images, queue and the PACS outbox -----------------------------------------------------


def _images() -> Iterator[Metric]:
    Image = apps.get_model("diagnosis", "Image")
    by_status = dict(
        Image._default_manager.order_by().values_list("status").annotate(n=Count("pk"))
    )
    refused = CounterMetricFamily(
        "chestnet_images_refused",
        "Images the model declined (not analysed), by reason and model version.",
        labels=["reason", "model_version"],
    )
    for reason, version, count in (
        Image._default_manager.filter(status="refused")
        .order_by("refusal_reason", "refusal_model_version")
        .values_list("refusal_reason", "refusal_model_version")
        .annotate(n=Count("pk"))
    ):
        refused.add_metric([reason, version], count)
    yield refused
    yield GaugeMetricFamily(
        "chestnet_images_failed",
        "Images whose analysis failed and that wait for a retry.",
        value=by_status.get("failed", 0),
    )
    depth = GaugeMetricFamily(
        "chestnet_queue_depth", "Images waiting for or in analysis.", labels=["status"]
    )
    for status in ("queued", "processing"):
        depth.add_metric([status], by_status.get(status, 0))
    yield depth


def _outbox() -> Iterator[Metric]:
    Outbound = apps.get_model("dicomnet", "OutboundObject")
    SendAttempt = apps.get_model("dicomnet", "SendAttempt")
    by_state = dict(
        Outbound._default_manager.order_by().values_list("status").annotate(n=Count("pk"))
    )
    outbox = GaugeMetricFamily(
        "chestnet_pacs_outbox", "Objects in the outbox to the PACS, by state.", labels=["state"]
    )
    for state, _label in getattr(Outbound._meta.get_field("status"), "choices", None) or []:
        outbox.add_metric([state], by_state.get(state, 0))
    yield outbox
    failures = SendAttempt._default_manager.filter(outcome="failed").count()
    yield CounterMetricFamily(
        "chestnet_pacs_outbox_failures", "Failed attempts to send to the PACS.", value=failures
    )


def _active_model() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "chestnet_active_model_info",
        "The model version the workers serve and its threshold (empty: the artifact's own).",
        labels=["version", "threshold"],
    )
    active = active_model()
    if active is not None:
        threshold = "" if active.threshold is None else repr(float(active.threshold))
        family.add_metric([active.version, threshold], 1)
    return family


# --- gauges of other apps ------------------------------------------------------------------


def _gauges_from_sources() -> Iterator[GaugeMetricFamily]:
    families: dict[str, GaugeMetricFamily] = {}
    for source in list(_SOURCES):
        for name, documentation, labels, value in _samples_of(source):
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, documentation, labels=[])
            family.add_sample(name, dict(labels), float(value))
    yield from families.values()


def _samples_of(source: GaugeSource) -> list[GaugeSample]:
    """The valid samples of one source; a source that fails is left out of this scrape
    (logged), not the whole scrape."""
    try:
        with transaction.atomic():  # a failed query must not spoil the scrape's others
            samples = list(source())
    except Exception:
        logger.exception("Metrics gauge source %s failed", getattr(source, "__name__", source))
        return []
    return [sample for sample in samples if _valid(sample)]


def _valid(sample: GaugeSample) -> bool:
    name, _documentation, labels, _value = sample
    valid = (
        bool(_NAME.fullmatch(name))
        and _SUFFIXES.sub("", name) not in BUILT_IN
        and name not in BUILT_IN
        and all(_LABEL.fullmatch(key) and isinstance(value, str) for key, value in labels.items())
    )
    if not valid:
        logger.warning("Metrics gauge %r left out: invalid or taken name or labels", name)
    return valid
