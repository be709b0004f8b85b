"""The operator's view: Prometheus metrics, OpenTelemetry traces, and log lines that
carry the request id.

The edge, the pipeline and the rate limiter report to `Metrics` through a few
methods (the limiter through a callback, as it sits below this layer); engine and
batch state is read only when `/metrics` is scraped. Nothing here is on the wire.
"""
