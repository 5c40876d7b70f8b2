"""Per-upstream Prometheus metrics, read at scrape time from the live counters (never drift)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from voxgate.engines.remote.manager import Upstreams

STATES = ("up", "down", "open", "half-open", "unknown")


class UpstreamCollector(Collector):
    """voxgate_upstream_* series, labelled by upstream name (and state / outcome)."""

    def __init__(self, upstreams: Upstreams) -> None:
        self._upstreams = upstreams

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | SummaryMetricFamily]:
        ups = self._upstreams.upstreams
        state = GaugeMetricFamily("voxgate_upstream_state", "1 for the state each upstream is in now "
                                  "(up, down, open and half-open breaker, unknown).", labels=["upstream", "state"])
        requests = CounterMetricFamily("voxgate_upstream_requests", "Requests sent to each upstream, by outcome "
                                       "(ok, failed: its fault, rejected: answered 4xx).",
                                       labels=["upstream", "outcome"])
        refused = CounterMetricFamily("voxgate_upstream_refused", "Jobs the open circuit breaker refused "
                                      "without asking the upstream.", labels=["upstream"])
        retried = CounterMetricFamily("voxgate_upstream_retries", "Requests sent again after a failure before "
                                      "any audio.", labels=["upstream"])
        cancelled = CounterMetricFamily("voxgate_upstream_cancelled", "Requests closed because their client "
                                        "went away or stopped.", labels=["upstream"])
        breaker = CounterMetricFamily("voxgate_upstream_breaker_opened", "Times each upstream's circuit breaker "
                                      "opened.", labels=["upstream"])
        active = GaugeMetricFamily("voxgate_upstream_active", "Requests in flight to each upstream now.",
                                   labels=["upstream"])
        queued = GaugeMetricFamily("voxgate_upstream_queued", "Jobs waiting for one of an upstream's "
                                   "concurrency slots now.", labels=["upstream"])
        voices = GaugeMetricFamily("voxgate_upstream_voices", "Voices each upstream lists.", labels=["upstream"])
        latency = SummaryMetricFamily("voxgate_upstream_first_audio_seconds", "Time from sending a request to "
                                      "an upstream to its first audio.", labels=["upstream"])
        for name, upstream in ups.items():
            stats = upstream.backend.stats
            for label in STATES:
                state.add_metric([name, label], 1.0 if upstream.state == label else 0.0)
            requests.add_metric([name, "ok"], stats.succeeded)
            requests.add_metric([name, "failed"], stats.failed)
            requests.add_metric([name, "rejected"], stats.rejected)
            refused.add_metric([name], stats.refused)
            retried.add_metric([name], stats.retried)
            cancelled.add_metric([name], stats.cancelled)
            breaker.add_metric([name], upstream.backend.breaker.opened)
            active.add_metric([name], stats.active)
            queued.add_metric([name], upstream.backend.gate.queued)
            voices.add_metric([name], len(upstream.voices))
            latency.add_metric([name], count_value=stats.first_audio_count, sum_value=stats.first_audio_sum)
        yield from (state, requests, refused, retried, cancelled, breaker, active, queued, voices, latency)


__all__ = ["UpstreamCollector"]
