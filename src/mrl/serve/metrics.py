"""Prometheus metrics of one app (its own registry: two apps in one process never share counters).

Exposed at ``GET /metrics`` in the Prometheus text format:

* ``mrl_requests_total{endpoint, method, status}`` and ``mrl_request_errors_total{endpoint, status}``
* ``mrl_request_duration_seconds{endpoint}`` (histogram)
* ``mrl_batch_size{queue}`` (units per batch: texts or queries), ``mrl_batch_items{queue}`` (requests
  per batch), ``mrl_batch_queue_wait_seconds{queue}``, ``mrl_batch_run_seconds{queue}`` (histograms)
* ``mrl_inflight_requests``, ``mrl_index_vectors``, ``mrl_index_generation`` (gauges),
  ``mrl_index_reloads_total{outcome}``
* the standard ``process_*`` collectors (resident memory, CPU seconds, open fds).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
ENDPOINTS = ("/", "/health", "/metrics", "/v1/embeddings", "/v1/search", "/v1/models", "/v1/info", "/admin/reload", "/static")


class ServeMetrics:
    """The instruments of one app, registered on a private :class:`CollectorRegistry`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter("mrl_requests", "HTTP requests answered.", ("endpoint", "method", "status"), registry=r)
        self.errors = Counter("mrl_request_errors", "HTTP requests answered with a 4xx or 5xx status.", ("endpoint", "status"), registry=r)
        self.latency = Histogram("mrl_request_duration_seconds", "Time from request start to response end.", ("endpoint",), buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("mrl_batch_size", "Units (texts or queries) per batch run.", ("queue",), buckets=SIZE_BUCKETS, registry=r)
        self.batch_items = Histogram("mrl_batch_items", "Requests per batch run.", ("queue",), buckets=SIZE_BUCKETS, registry=r)
        self.queue_wait = Histogram("mrl_batch_queue_wait_seconds", "Wait of a batch's oldest request before the batch ran.", ("queue",), buckets=LATENCY_BUCKETS, registry=r)
        self.batch_run = Histogram("mrl_batch_run_seconds", "Wall-clock of one batch in the worker thread.", ("queue",), buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("mrl_inflight_requests", "Requests being served now.", registry=r)
        self.index_vectors = Gauge("mrl_index_vectors", "Vectors in the served index.", registry=r)
        self.index_generation = Gauge("mrl_index_generation", "Reloads applied since start (0 = the index loaded at start).", registry=r)
        self.reloads = Counter("mrl_index_reloads", "Index reload attempts.", ("outcome",), registry=r)

    @staticmethod
    def endpoint(path: str) -> str:
        """A bounded label for ``path`` (unknown paths share one label)."""
        if path.startswith("/static/"):
            return "/static"
        return path if path in ENDPOINTS else "other"

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        ep = self.endpoint(path)
        self.requests.labels(ep, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(ep, str(status)).inc()
        self.latency.labels(ep).observe(seconds)

    def observe_batch(self, queue: str, units: int, items: int, wait_s: float, run_s: float) -> None:
        self.batch_size.labels(queue).observe(units)
        self.batch_items.labels(queue).observe(items)
        self.queue_wait.labels(queue).observe(wait_s)
        self.batch_run.labels(queue).observe(run_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
