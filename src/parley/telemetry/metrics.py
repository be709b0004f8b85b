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

Under `parley serve --workers N` a scrape reaches one worker, whichever the kernel
hands the connection to, and must report them all: the parent sets
`PROMETHEUS_MULTIPROC_DIR`, and prometheus_client's multiprocess mode keeps every
worker's values in files there, which a scrape of any worker adds up (counters and
histograms summed, a dead worker's included, so they never go back). Engine and
process state, read at scrape time in one process, is copied into those files by
each worker every `STATE_REFRESH` seconds and at each of its scrapes: summed where
a sum means something (slots, queues, memory, CPU), else one series per worker
(`pid`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

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
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from parley import __version__
from parley.engines.routing import RoutedEngine

if TYPE_CHECKING:
    from parley.engines.registry import ModelRegistry
    from parley.protocol.responses import Usage
    from parley.store.batch_records import BatchProgress

__all__ = ["SHARED_DIR_ENV", "Metrics", "PrometheusMetrics", "forget_worker"]

# prometheus_client's own switch to its multiprocess mode, read when it is imported.
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds between copies of a worker's state into the shared files.
STATE_REFRESH = 1.0
# How the workers' copies of each state gauge make one value in a scrape
# (prometheus_client's multiprocess modes; "live" leaves out workers that died).
# A state counter (a count since the process started) is added up as counters are.
SharedMode = Literal["liveall", "livesum", "livemax", "livemin"]
SHARED_GAUGE_MODES: dict[str, SharedMode] = {
    "parley_model_ready": "liveall",
    "parley_engine_slots": "livesum",
    "parley_engine_slots_busy": "livesum",
    "parley_engine_queue_depth": "livesum",
    "parley_backend_up": "liveall",
    "parley_backend_in_flight": "livesum",
    "parley_backend_consecutive_failures": "liveall",
    "process_virtual_memory_bytes": "livesum",
    "process_resident_memory_bytes": "livesum",
    "process_open_fds": "livesum",
    "process_max_fds": "livemax",
    "process_start_time_seconds": "livemin",
}


def forget_worker(pid: int) -> None:
    """A worker is gone: its state no longer counts (its counts still do)."""
    shared = os.environ.get(SHARED_DIR_ENV)
    if shared:
        mark_process_dead(pid, shared)  # type: ignore[no-untyped-call]


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

    def start(self) -> None:
        """Begin what runs in the background (the shared state's copies)."""

    async def aclose(self) -> None:
        pass


class PrometheusMetrics(Metrics):
    enabled = True

    def __init__(self, shared_dir: str | None = None) -> None:
        """`shared_dir`: the workers' shared folder (`SHARED_DIR_ENV`), if any."""
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
            "parley_http_requests_in_flight",
            "HTTP requests being handled now.",
            registry=r,
            multiprocess_mode="livesum",
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
        self._state = _StateCollector()
        self._shared: _SharedState | None = None
        self._refresher: asyncio.Task[None] | None = None
        if shared_dir is None:
            self._exposed = r
            r.register(self._state)
            ProcessCollector(registry=r)
        else:
            # What a scrape reports: every worker's values from the shared files; the
            # store's batch counts and the build, the same in every worker, from this one.
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, shared_dir)  # type: ignore[no-untyped-call]
            self._exposed.register(_BatchCollector(self._state))
            self._shared = _SharedState(self._state, ProcessCollector(registry=None))
        Info("parley_build", "The running Parley.", registry=self._exposed).info(
            {"version": __version__}
        )
        PlatformCollector(registry=self._exposed)
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
        self._state.progress = progress

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        if self._shared is not None:
            self._shared.copy()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._exposed), content_type

    def start(self) -> None:
        if self._shared is not None and self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(
                self._shared.keep_copying(), name="metrics-state"
            )

    async def aclose(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


class _StateCollector(Collector):
    """State read at scrape time: nothing on the request path keeps it up to date."""

    def __init__(self) -> None:
        self.models: ModelRegistry | None = None
        self.progress: BatchProgress | None = None

    def collect(self) -> Iterable[Metric]:
        yield from self.engine_families()
        yield from self.batch_families()

    def engine_families(self) -> Iterable[Metric]:
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

    def batch_families(self) -> Iterable[Metric]:
        progress = self.progress
        if progress is None:
            return
        batches = GaugeMetricFamily(
            "parley_batches",
            "Message Batches in the store, by processing status.",
            labels=["status"],
        )
        for status in BATCH_STATUSES:
            batches.add_metric([status], progress.batches.get(status, 0))
        requests = GaugeMetricFamily(
            "parley_batch_requests",
            "Requests of the batches still in progress or canceling, by state.",
            labels=["state"],
        )
        for state in REQUEST_STATES:
            requests.add_metric([state], progress.requests.get(state, 0))
        yield batches
        yield requests


class _BatchCollector(Collector):
    """The store's batch counts alone (the workers share the store)."""

    def __init__(self, state: _StateCollector) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        return self._state.batch_families()


class _SharedState:
    """One worker's engine and process state, copied into the shared files as gauges
    (`SHARED_GAUGE_MODES`) and counters (added to by what they grew since the last
    copy), where a scrape of any worker finds it."""

    def __init__(self, state: _StateCollector, process: ProcessCollector) -> None:
        self._state = state
        self._process = process
        self._gauges: dict[str, Gauge] = {}
        self._counters: dict[str, Counter] = {}
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}

    async def keep_copying(self) -> None:
        while True:
            self.copy()
            await asyncio.sleep(STATE_REFRESH)

    def copy(self) -> None:
        for family in [*self._state.engine_families(), *self._process.collect()]:
            if family.type == "counter":
                self._count(family)
            elif family.name in SHARED_GAUGE_MODES:
                self._set(family)

    def _set(self, family: Metric) -> None:
        for sample in family.samples:
            gauge = self._gauges.get(family.name)
            if gauge is None:
                gauge = self._gauges[family.name] = Gauge(
                    family.name,
                    family.documentation,
                    list(sample.labels),
                    registry=None,
                    multiprocess_mode=SHARED_GAUGE_MODES[family.name],
                )
            (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)

    def _count(self, family: Metric) -> None:
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            counter = self._counters.get(family.name)
            if counter is None:
                counter = self._counters[family.name] = Counter(
                    family.name, family.documentation, list(sample.labels), registry=None
                )
            key = (family.name, tuple(sample.labels.values()))
            grown = sample.value - self._counted.get(key, 0.0)
            if grown > 0:
                (counter.labels(**sample.labels) if sample.labels else counter).inc(grown)
                self._counted[key] = sample.value
