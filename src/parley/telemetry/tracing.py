"""OpenTelemetry traces of the request path, exported over OTLP/HTTP when
`otlp_endpoint` is set.

One trace per request: a server span for the HTTP request (continuing the
client's W3C `traceparent`, which the official SDKs send when the app has
OpenTelemetry set up), with children for auth, the budget check, prepare, admit,
open, the generation (its first token an event) and the settlement. Batch work
is not traced.

`Tracing` itself is off: each call returns a shared no-op at the cost of a
method call, and OpenTelemetry is never imported (it is the optional extra
`parley[otel]`). `OtelTracing` keeps a tracer provider of its own rather than
the process-wide one, so several apps in one process keep their own spans.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from parley import __version__

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

__all__ = ["OtelTracing", "Tracing", "TracingUnavailable"]

_OFF: AbstractContextManager[None] = nullcontext()
TRACES_PATH = "/v1/traces"


class TracingUnavailable(Exception):
    """`otlp_endpoint` is set but OpenTelemetry is not installed."""


class Tracing:
    """Off: no spans, nothing imported."""

    enabled = False

    @staticmethod
    def from_endpoint(endpoint: str | None) -> Tracing:
        if not endpoint:
            return Tracing()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise TracingUnavailable(
                "otlp_endpoint is set, but OpenTelemetry is not installed: "
                "pip install 'parley[otel]'"
            ) from exc
        # Like OTEL_EXPORTER_OTLP_ENDPOINT, the setting is the collector's base URL.
        url = endpoint.rstrip("/")
        if not url.endswith(TRACES_PATH):
            url += TRACES_PATH
        return OtelTracing(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))

    def request_span(
        self, method: str, path: str, request_id: str, headers: list[tuple[bytes, bytes]]
    ) -> Any:
        """Start the server span of an HTTP request and make it current; the edge ends
        it with `end_request_span`. None when off."""
        return None

    def end_request_span(self, span: Any, route: str, status: int) -> None:
        pass

    def span(self, name: str) -> AbstractContextManager[Any]:
        """A child of the current span, current while the block runs."""
        return _OFF

    def start_span(self, name: str) -> Any:
        """A child of the current span that the caller ends; None when off."""
        return None

    def failed(self, span: Any, error: BaseException) -> None:
        """Mark a span started by `start_span` as failed with `error`."""

    def shutdown(self) -> None:
        """Export what is buffered and stop."""


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, processor: SpanProcessor) -> None:
        from opentelemetry import context, trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        # Resource.create also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        resource = Resource.create({"service.name": "parley", "service.version": __version__})
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("parley", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace
        self._context = context

    @classmethod
    def exporting_to(cls, exporter: SpanExporter) -> OtelTracing:
        """Spans handed to `exporter` as each ends (tests use an in-memory one)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        return cls(SimpleSpanProcessor(exporter))

    def request_span(
        self, method: str, path: str, request_id: str, headers: list[tuple[bytes, bytes]]
    ) -> Any:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name in (b"traceparent", b"tracestate")
        }
        parent = self._propagator.extract(carrier) if carrier else None
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "parley.request_id": request_id,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return _RequestSpan(span, token, method)

    def end_request_span(self, span: Any, route: str, status: int) -> None:
        assert isinstance(span, _RequestSpan)
        inner = span.span
        if route:  # `{method} {route}` by the HTTP semantic conventions, once routed
            inner.update_name(f"{span.method} {route}")
            inner.set_attribute("http.route", route)
        inner.set_attribute("http.response.status_code", status)
        if status >= 500:
            inner.set_status(self._trace.StatusCode.ERROR)
        inner.end()
        self._context.detach(span.token)

    def span(self, name: str) -> AbstractContextManager[Any]:
        return self._tracer.start_as_current_span(name)

    def start_span(self, name: str) -> Span:
        return self._tracer.start_span(name)

    def failed(self, span: Any, error: BaseException) -> None:
        span.record_exception(error)
        span.set_status(self._trace.StatusCode.ERROR, str(error))

    def shutdown(self) -> None:
        self._provider.shutdown()


class _RequestSpan:
    __slots__ = ("method", "span", "token")

    def __init__(self, span: Span, token: Token[Context], method: str) -> None:
        self.span = span
        self.token = token
        self.method = method
