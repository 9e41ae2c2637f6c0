"""The official ``kubernetes`` Python client against our API server.

The client is synchronous (urllib3), so it runs in a worker thread while the server runs
on the Trio loop of the test.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from purelb.apiserver.testing import TestApiServer

from .apiserver_fixtures import srv

__all__ = ["srv"]

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes import watch as k8s_watch  # noqa: E402

WATCH_TIMEOUT_S = 5


def _core(srv: TestApiServer) -> Any:
    api_client = k8s_config.new_client_from_config(config_file=str(srv.kubeconfig))
    return k8s.CoreV1Api(api_client)


def _service(name: str) -> Any:
    return k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name=name, labels={"app": name}),
        spec=k8s.V1ServiceSpec(type="LoadBalancer", selector={"app": name},
                               ports=[k8s.V1ServicePort(port=80, target_port=8080)]),
    )


def _watch_events(core: Any, rv: str, n: int) -> list[tuple[str, str]]:
    w = k8s_watch.Watch()
    out: list[tuple[str, str]] = []
    for ev in w.stream(core.list_namespaced_service, "default", resource_version=rv,
                       timeout_seconds=WATCH_TIMEOUT_S):
        out.append((ev["type"], ev["object"].metadata.name))
        if len(out) >= n:
            w.stop()
    return out


async def test_client_lists_and_watches_services_from_a_resource_version(
    srv: TestApiServer,
) -> None:
    def scenario() -> tuple[list[tuple[str, str]], Any]:
        core = _core(srv)
        rv = core.list_namespaced_service("default").metadata.resource_version
        core.create_namespaced_service("default", _service("a"))
        core.create_namespaced_service("default", _service("b"))
        core.patch_namespaced_service_status(
            "b", "default", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}})
        core.delete_namespaced_service("a", "default")
        events = _watch_events(core, rv, 4)
        return events, core.read_namespaced_service("b", "default")

    events, b = await trio.to_thread.run_sync(scenario)
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    assert b.status.load_balancer.ingress[0].ip == "192.0.2.7"
    assert b.spec.cluster_ip and b.spec.ports[0].node_port


async def test_client_recovers_from_410_by_relisting(srv: TestApiServer) -> None:
    # With timeout_seconds set the client does not retry a 410 itself, so one forced
    # expiry reaches our code, which relists and watches from the new list's RV.
    srv.faults.expire_next_watch(count=1)

    def scenario() -> list[tuple[str, str]]:
        core = _core(srv)
        rv = core.list_namespaced_service("default").metadata.resource_version
        core.create_namespaced_service("default", _service("a"))
        try:
            _watch_events(core, rv, 1)
        except k8s.ApiException as exc:
            assert exc.status == 410
        else:
            raise AssertionError("the forced 410 did not reach the client")
        listed = core.list_namespaced_service("default")
        names = [("LISTED", s.metadata.name) for s in listed.items]
        core.create_namespaced_service("default", _service("b"))
        return names + _watch_events(core, listed.metadata.resource_version, 1)

    assert await trio.to_thread.run_sync(scenario) == [("LISTED", "a"), ("ADDED", "b")]


async def test_client_sees_conflicts_and_not_found_as_api_exceptions(
    srv: TestApiServer,
) -> None:
    def scenario() -> tuple[int, int, int]:
        core = _core(srv)
        svc = core.create_namespaced_service("default", _service("a"))
        svc.metadata.labels = {"x": "1"}
        core.replace_namespaced_service("a", "default", svc)
        codes = []
        for call in (
            lambda: core.replace_namespaced_service("a", "default", svc),  # stale RV
            lambda: core.create_namespaced_service("default", _service("a")),
            lambda: core.read_namespaced_service("nope", "default"),
        ):
            try:
                call()
            except k8s.ApiException as exc:
                codes.append(exc.status)
        return tuple(codes)  # type: ignore[return-value]

    assert await trio.to_thread.run_sync(scenario) == (409, 409, 404)
