"""Prometheus metrics, one registry per running `Services` (never the global one, so
that several apps in one process keep their own counts).

Two kinds:
- events, counted as they happen by the edge (requests, latency), the pipeline
  (time to first token, tokens, failures after the start) and the rate limiter
  (refusals). Each call is a dict lookup of pre-bound label children and an
  increment: label values are only turned into strings the first time a
  combination is seen.
- state, read when `/metrics` is scraped and never before: engine slots and
  queues, backend health and ejections (engines/routing.py), models ready, and
  batch progress (counted in the store by the scrape itself).

`Metrics` itself records nothing (`metrics = "off"`); `PrometheusMetrics` does.
Labels never carry a key, a request id or a name the client made up: a model is
the id it resolved to, a route is the path template.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from parley import __version__
from parley.engines.routing import RoutedEngine

if TYPE_CHECKING:
    from parley.engines.registry import ModelRegistry
    from parley.protocol.responses import Usage
    from parley.store.batch_records import BatchProgress

__all__ = ["Metrics", "PrometheusMetrics"]

# Request latency runs from a refused request (ms) to a long stream (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BATCH_STATUSES = ("in_progress", "canceling", "ended")
REQUEST_STATES = ("pending", "running", "succeeded", "errored", "canceled", "expired")


class Metrics:
    """What the edge, the pipeline and the limiter report. This base records nothing."""

    enabled = False

    def request_started(self) -> None:
        pass

    def request_finished(
        self, route: str, method: str, status: int, model: str, seconds: float
    ) -> None:
        pass

    def first_token(self, model: str, seconds: float) -> None:
        pass

    def tokens(self, model: str, priority: str, usage: Usage) -> None:
        pass

    def generation_failed(self, model: str, error_type: str) -> None:
        pass

    def rate_limited(self, limit: str, model: str) -> None:
        pass

    def watch(self, models: ModelRegistry) -> None:
        """The models whose engines' state a scrape reads."""

    def set_batch_progress(self, progress: BatchProgress | None) -> None:
        """Batch counts as the store gave them just now (None: it could not)."""

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape's body and content type (OpenMetrics when asked for)."""
        raise RuntimeError("metrics are off")


class PrometheusMetrics(Metrics):
    enabled = True

    def __init__(self) -> None:
        # No `_created` series beside every counter and histogram: in the text format
        # they are separate series that dashboards never use. (The switch is global to
        # prometheus_client; nothing else in the process uses it.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self._http_total = Counter(
            "parley_http_requests",
            "HTTP requests answered, by route template, method, status and resolved model.",
            ["route", "method", "status", "model"],
            registry=r,
        )
        self._http_seconds = Histogram(
            "parley_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response (a stream's last "
            "event included).",
            ["route", "method", "status", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._in_flight = Gauge(
            "parley_http_requests_in_flight", "HTTP requests being handled now.", registry=r
        )
        self._ttft = Histogram(
            "parley_time_to_first_token_seconds",
            "Time from the request's arrival to its first content event (interactive "
            "messages, streamed or not).",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._tokens = Counter(
            "parley_tokens",
            "Tokens of settled messages, by model, priority (interactive or batch) and type "
            "(input, output, cache_creation_input, cache_read_input).",
            ["model", "priority", "type"],
            registry=r,
        )
        self._failures = Counter(
            "parley_generation_errors",
            "Messages that failed after their engine accepted them (a stream's error event), "
            "by model and error type.",
            ["model", "type"],
            registry=r,
        )
        self._refusals = Counter(
            "parley_rate_limited",
            "Requests refused by a rate limit or budget, by limit and model.",
            ["limit", "model"],
            registry=r,
        )
        Info("parley_build", "The running Parley.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._state = _StateCollector()
        r.register(self._state)
        # Pre-bound children, found by a tuple of the label values as given.
        self._http: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}
        self._ttfts: dict[str, Any] = {}
        self._token_children: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}

    def request_started(self) -> None:
        self._in_flight.inc()

    def request_finished(
        self, route: str, method: str, status: int, model: str, seconds: float
    ) -> None:
        self._in_flight.dec()
        if method not in METHODS:
            method = "other"  # any token is a method to the HTTP server: not a label
        key = (route, method, status, model)
        children = self._http.get(key)
        if children is None:
            labels = (route, method, str(status), model)
            children = self._http[key] = (
                self._http_total.labels(*labels),
                self._http_seconds.labels(*labels),
            )
        children[0].inc()
        children[1].observe(seconds)

    def first_token(self, model: str, seconds: float) -> None:
        child = self._ttfts.get(model)
        if child is None:
            child = self._ttfts[model] = self._ttft.labels(model)
        child.observe(seconds)

    def tokens(self, model: str, priority: str, usage: Usage) -> None:
        key = (model, priority)
        children = self._token_children.get(key)
        if children is None:
            children = self._token_children[key] = (
                self._tokens.labels(model, priority, "input"),
                self._tokens.labels(model, priority, "output"),
                self._tokens.labels(model, priority, "cache_creation_input"),
                self._tokens.labels(model, priority, "cache_read_input"),
            )
        input_, output, created, read = children
        if usage.input_tokens:
            input_.inc(usage.input_tokens)
        if usage.output_tokens:
            output.inc(usage.output_tokens)
        if usage.cache_creation_input_tokens:
            created.inc(usage.cache_creation_input_tokens)
        if usage.cache_read_input_tokens:
            read.inc(usage.cache_read_input_tokens)

    def generation_failed(self, model: str, error_type: str) -> None:
        self._failures.labels(model, error_type).inc()

    def rate_limited(self, limit: str, model: str) -> None:
        self._refusals.labels(limit, model).inc()

    def watch(self, models: ModelRegistry) -> None:
        self._state.models = models

    def set_batch_progress(self, progress: BatchProgress | None) -> None:
        self._state.batches = progress

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StateCollector(Collector):
    """State read at scrape time: nothing on the request path keeps it up to date."""

    def __init__(self) -> None:
        self.models: ModelRegistry | None = None
        self.batches: BatchProgress | None = None

    def collect(self) -> Iterable[Metric]:
        yield from self._engines()
        yield from self._batches()

    def _engines(self) -> Iterable[Metric]:
        ready = GaugeMetricFamily(
            "parley_model_ready",
            "1 when the model's engine takes requests (a router: a backend in rotation).",
            labels=["model"],
        )
        slots = GaugeMetricFamily(
            "parley_engine_slots",
            "Sequences the model's local engines decode at once.",
            labels=["model"],
        )
        busy = GaugeMetricFamily(
            "parley_engine_slots_busy",
            "Slots decoding now, by priority (interactive or batch).",
            labels=["model", "priority"],
        )
        queued = GaugeMetricFamily(
            "parley_engine_queue_depth",
            "Requests waiting for a slot, by priority (interactive or batch).",
            labels=["model", "priority"],
        )
        up = GaugeMetricFamily(
            "parley_backend_up",
            "1 while the backend is in rotation, 0 while ejected and health-checked.",
            labels=["model", "backend"],
        )
        in_flight = GaugeMetricFamily(
            "parley_backend_in_flight",
            "Requests the backend is serving now.",
            labels=["model", "backend"],
        )
        failures = GaugeMetricFamily(
            "parley_backend_consecutive_failures",
            "The backend's failures in a row (ejected at the model's eject_after).",
            labels=["model", "backend"],
        )
        ejections = CounterMetricFamily(
            "parley_backend_ejections",
            "Times the backend was taken out of rotation since start.",
            labels=["model", "backend"],
        )
        for entry in self.models.entries if self.models is not None else []:
            model, engine = entry.id, entry.engine
            ready.add_metric([model], 1 if engine.is_ready() else 0)
            occupancy = engine.occupancy()
            if occupancy is not None:
                slots.add_metric([model], occupancy.slots)
                background = occupancy.busy_background
                busy.add_metric([model, "interactive"], occupancy.busy - background)
                busy.add_metric([model, "batch"], background)
                queued.add_metric([model, "interactive"], occupancy.waiting)
                queued.add_metric([model, "batch"], occupancy.waiting_background)
            if isinstance(engine, RoutedEngine):
                for backend in engine.backends:
                    labels = [model, backend.name]
                    up.add_metric(labels, 0 if backend.ejected else 1)
                    in_flight.add_metric(labels, backend.outstanding)
                    failures.add_metric(labels, backend.failures)
                    ejections.add_metric(labels, backend.ejections)
        yield from (ready, slots, busy, queued, up, in_flight, failures, ejections)

    def _batches(self) -> Iterable[Metric]:
        if self.batches is None:
            return
        batches = GaugeMetricFamily(
            "parley_batches",
            "Message Batches in the store, by processing status.",
            labels=["status"],
        )
        for status in BATCH_STATUSES:
            batches.add_metric([status], self.batches.batches.get(status, 0))
        requests = GaugeMetricFamily(
            "parley_batch_requests",
            "Requests of the batches still in progress or canceling, by state.",
            labels=["state"],
        )
        for state in REQUEST_STATES:
            requests.add_metric([state], self.batches.requests.get(state, 0))
        yield batches
        yield requests
