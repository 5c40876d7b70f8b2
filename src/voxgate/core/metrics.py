"""Prometheus metrics, one registry per app (never the process-global one, so apps stay independent)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_FIRST_AUDIO_BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.5, 5.0)


class _Gauges(Collector):
    """Gauges read at scrape time from live state, so they can never drift."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in self._read().items():
            yield GaugeMetricFamily(f"voxgate_{name}", name.replace("_", " "), value=value)


class Metrics:
    """Counters and histograms the service and the dialects write."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "voxgate_requests", "Requests received, per dialect.", ["dialect"], registry=self.registry
        )
        self.errors = Counter(
            "voxgate_errors", "Requests answered with an error, per dialect and kind.",
            ["dialect", "kind"], registry=self.registry,
        )
        self.first_audio = Histogram(
            "voxgate_first_audio_seconds", "Time from request admission to its first audio.",
            buckets=_FIRST_AUDIO_BUCKETS, registry=self.registry,
        )
        self.audio_seconds = Counter(
            "voxgate_audio_seconds", "Seconds of audio produced.", registry=self.registry
        )
        self.cancelled = Counter(
            "voxgate_cancelled", "Requests whose client went away or was stopped before the end.",
            registry=self.registry,
        )
        self.segments_dropped = Counter(
            "voxgate_segments_dropped", "Text segments of cancelled requests that were never synthesized.",
            registry=self.registry,
        )
        self.busy_cuts = Counter(
            "voxgate_busy_first_cuts", "Long first sentences cut at a phrase because every worker was busy.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "voxgate_rejected_busy", "Requests refused because the admission queue was full.",
            registry=self.registry,
        )

        self.segments = Counter(
            "voxgate_segments", "Text segments sent to an engine for requests, per engine (which engine spoke).",
            ["engine"], registry=self.registry,
        )
        self.reference_cache = Counter(
            "voxgate_reference_cache", "Per-request references looked up in the reference cache, by outcome "
            "(hit: measured and matched before; miss: measured and matched now).", ["outcome"],
            registry=self.registry,
        )

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        """Expose live gauges (queue depth, in-flight work) read at scrape time."""
        self.registry.register(_Gauges(read))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
