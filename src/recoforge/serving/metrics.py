"""Request metrics of the service in the Prometheus text exposition format (0.0.4).

:class:`Metrics` counts requests per (method, route template, status), keeps a latency
histogram per route, and counts served lists per source (live, precomputed, popular,
session); :class:`MetricsMiddleware` feeds it. The exposition is written here (no client
library): ``# HELP`` / ``# TYPE`` lines, then one sample per line, label values escaped.
Memory: O(routes x statuses x buckets).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: latency histogram bucket bounds, seconds
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(str(value))}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """Thread-safe counters and histograms of one app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self._lists: dict[str, int] = defaultdict(int)
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            counts = self._buckets.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[route] += seconds

    def served(self, source: str) -> None:
        with self._lock:
            self._lists[source] += 1

    def render(self, gauges: dict[str, tuple[str, list[tuple[dict[str, str], float]]]]
               ) -> str:
        """The exposition text; ``gauges`` maps a metric name to (help, samples)."""
        lines: list[str] = []
        with self._lock:
            lines += ["# HELP recoforge_http_requests_total HTTP requests answered.",
                      "# TYPE recoforge_http_requests_total counter"]
            for (method, route, status), n in sorted(self._requests.items()):
                labels = _labels([("method", method), ("route", route), ("status", status)])
                lines.append(f"recoforge_http_requests_total{labels} {n}")
            lines += ["# HELP recoforge_http_request_duration_seconds Time to answer a "
                      "request.", "# TYPE recoforge_http_request_duration_seconds histogram"]
            for route, counts in sorted(self._buckets.items()):
                name = "recoforge_http_request_duration_seconds"
                for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                    lines.append(f"{name}_bucket"
                                 f"{_labels([('route', route), ('le', _number(bound))])} {n}")
                lines.append(f"{name}_sum{_labels([('route', route)])} "
                             f"{_number(self._sums[route])}")
                lines.append(f"{name}_count{_labels([('route', route)])} {counts[-1]}")
            lines += ["# HELP recoforge_lists_served_total Recommendation lists served, by "
                      "source.", "# TYPE recoforge_lists_served_total counter"]
            for source, n in sorted(self._lists.items()):
                lines.append(f"recoforge_lists_served_total{_labels([('source', source)])} {n}")
        lines += ["# HELP recoforge_start_time_seconds When the service started (epoch s).",
                  "# TYPE recoforge_start_time_seconds gauge",
                  f"recoforge_start_time_seconds {_number(self.started)}"]
        for name, (help_text, samples) in sorted(gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines += [f"{name}{_labels(sorted(labels.items()))} {_number(value)}"
                      for labels, value in samples]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request into a :class:`Metrics`, labelled by the
    route template (``/recommend/{user}``), never by raw paths (bounded label sets)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status,
                                   time.perf_counter() - start)
