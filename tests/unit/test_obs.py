import json
import logging

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry, Counter

from purelb.obs import Health, configure_logging, serve_health_and_metrics
from purelb.obs._logs import JsonFormatter


async def test_endpoints_report_metrics_health_and_readiness():
    registry = CollectorRegistry()
    Counter("purelb_test_total", "a test counter", registry=registry).inc(3)
    health = Health("synced", "leading")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_health_and_metrics, "127.0.0.1", 0, health, registry)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert "purelb_test_total 3.0" in metrics.text
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and "leading, synced" in ready.text
            health.set("synced", True)
            health.set("leading", True)
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405
        nursery.cancel_scope.cancel()


def test_unknown_condition_is_a_clear_error():
    with pytest.raises(KeyError, match="known: \\['synced'\\]"):
        Health("synced").set("leeding", True)


def test_json_logs_carry_fields_and_redact_secrets():
    record = logging.LogRecord("purelb.x", logging.INFO, __file__, 1, "hello %s", ("w",), None)
    record.reason = "exhausted"
    record.token = "abc123"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "hello w" and doc["reason"] == "exhausted"
    assert doc["token"] == "<redacted>"


def test_configure_logging_rejects_bad_values():
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml")
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", "text")
