"""Observability: structured logs, Prometheus metrics, health endpoints."""

from ._health import Health as Health
from ._health import serve_health_and_metrics as serve_health_and_metrics
from ._logs import configure_logging as configure_logging

__all__ = ["Health", "configure_logging", "serve_health_and_metrics"]
