"""The counters ``GET /metrics`` serves, in Prometheus' text format (no client library needed)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter

#: seconds; an extraction on a CPU takes from tens of milliseconds to minutes
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class HttpMetrics:
    """Requests by path and status, and a latency histogram of the extraction endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0

    def record(self, path: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[path, status] += 1
            if seconds is not None:
                self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
                self._latency_sum += seconds

    def render(self, gauges: dict[str, tuple[str, str, float]]) -> str:
        """The exposition text: these counters, then ``gauges`` (name -> (type, help, value))."""
        with self._lock:
            lines = _header("uner_http_requests_total", "counter", "HTTP requests answered, by path and status.")
            for (path, status), count in sorted(self.requests.items()):
                lines.append(f'uner_http_requests_total{{path="{_escape(path)}",status="{status}"}} {count}')
            errors = sum(count for (_, status), count in self.requests.items() if status >= 400)
            lines += _header("uner_http_errors_total", "counter", "HTTP requests answered with a 4xx or 5xx status.")
            lines.append(f"uner_http_errors_total {errors}")
            lines += _header(
                "uner_request_duration_seconds", "histogram", "Time to answer POST /v1/extract (status 200)."
            )
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self._buckets):
                cumulative += count
                label = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'uner_request_duration_seconds_bucket{{le="{label}"}} {cumulative}')
            lines.append(f"uner_request_duration_seconds_sum {self._latency_sum:.6f}")
            lines.append(f"uner_request_duration_seconds_count {cumulative}")
        for name, (kind, help_text, value) in gauges.items():
            lines += _header(name, kind, help_text)
            lines.append(f"{name} {_number(value)}")
        return "\n".join(lines) + "\n"


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}"
