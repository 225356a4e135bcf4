"""The server's Prometheus metrics (``GET /metrics``, text exposition format 0.0.4)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping

__all__ = ["Metrics"]

# Seconds; spans a cached small-catalogue query (~50 µs) to an fsync on a slow disk.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Recommender.stats() counters exported, with their help text.
_ENGINE_COUNTERS = {
    "events_accepted": "Events accepted (not repeats), since the process started or replayed from the log.",
    "events_duplicate": "Events dropped as repeats of accepted ones.",
    "events_unknown_item": "Accepted events whose item the model does not know.",
    "events_without_item": "Accepted events without an item.",
    "events_replayed": "Events replayed from the event log at load.",
}


class Metrics:
    """Requests by route and status, and a latency histogram by route; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._histograms: dict[str, list[int]] = {}  # per route: counts per bucket (+Inf last)
        self._sums: dict[str, float] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Counts one request."""
        bucket = bisect.bisect_left(_BUCKETS, seconds)
        with self._lock:
            key = (route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            counts = self._histograms.get(route)
            if counts is None:
                counts = self._histograms[route] = [0] * (len(_BUCKETS) + 1)
            counts[bucket] += 1
            self._sums[route] = self._sums.get(route, 0.0) + seconds

    def render(self, engine_stats: Mapping[str, int | bool]) -> str:
        """The exposition text, with the engine's counters from :meth:`hrnn.Recommender.stats`."""
        with self._lock:
            requests = sorted(self._requests.items())
            histograms = {route: list(counts) for route, counts in sorted(self._histograms.items())}
            sums = dict(self._sums)
        lines = [
            "# HELP hrnn_requests_total HTTP requests answered, by route and status.",
            "# TYPE hrnn_requests_total counter",
        ]
        lines += [f'hrnn_requests_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in requests]
        lines += [
            "# HELP hrnn_request_duration_seconds Time from a request's last byte to its answer.",
            "# TYPE hrnn_request_duration_seconds histogram",
        ]
        for route, counts in histograms.items():
            total = 0
            for bound, count in zip((*_BUCKETS, None), counts, strict=True):
                total += count
                le = "+Inf" if bound is None else repr(bound)
                lines.append(f'hrnn_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {total}')
            lines.append(f'hrnn_request_duration_seconds_sum{{route="{route}"}} {sums[route]:.9g}')
            lines.append(f'hrnn_request_duration_seconds_count{{route="{route}"}} {total}')
        for name, help_text in _ENGINE_COUNTERS.items():
            if name in engine_stats:
                lines += [
                    f"# HELP hrnn_{name}_total {help_text}",
                    f"# TYPE hrnn_{name}_total counter",
                    f"hrnn_{name}_total {int(engine_stats[name])}",
                ]
        if "users_with_events" in engine_stats:
            lines += [
                "# HELP hrnn_users_with_events Users (and anonymous sessions) with real-time events.",
                "# TYPE hrnn_users_with_events gauge",
                f"hrnn_users_with_events {int(engine_stats['users_with_events'])}",
            ]
        return "\n".join(lines) + "\n"
