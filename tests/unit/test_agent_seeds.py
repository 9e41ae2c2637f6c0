"""Gossip seeds from the agent pods when none are configured (API faked at the transport)."""

from __future__ import annotations

import httpx

from purelb.controllers.agent import AgentDaemon, AgentDaemonSettings
from purelb.election import Address
from purelb.kube import ClientSettings, ClusterConfig, KubeClient

CFG = ClusterConfig(server="http://api.test", token="tok", namespace="ns1", source="test")


def pods_handler(requests: list[httpx.Request]):
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path != "/api/v1/namespaces/purelb-system/pods":
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return httpx.Response(200, json={"kind": "PodList", "apiVersion": "v1",
                                         "metadata": {}, "items": [
            {"metadata": {"name": "a"}, "status": {"podIP": "10.0.0.1"}},
            {"metadata": {"name": "b"}, "status": {"podIP": "10.0.0.2"}},
            {"metadata": {"name": "pending"}, "status": {}}]})
    return handle


async def test_without_static_seeds_the_other_agent_pods_are_the_seeds() -> None:
    requests: list[httpx.Request] = []
    settings = AgentDaemonSettings(node_name="n1", gossip_bind=Address("10.0.0.1", 7934))
    async with KubeClient(CFG, role="test", settings=ClientSettings(rate_limit=None),
                          transport=httpx.MockTransport(pods_handler(requests))) as client:
        daemon = AgentDaemon(client, settings)
        seeds = await daemon.gossip_seeds()
    assert seeds == [Address("10.0.0.2", 7934)]  # our own address and pending pods skipped
    assert requests[0].url.params["labelSelector"] == "app.kubernetes.io/component=lbnodeagent"


async def test_static_seeds_win_and_ask_nothing() -> None:
    settings = AgentDaemonSettings(node_name="n1", gossip_bind=Address("10.0.0.1", 7934),
                                   gossip_seeds=(Address("10.0.0.9", 7000),))
    async with KubeClient(CFG, role="test", settings=ClientSettings(rate_limit=None),
                          transport=httpx.MockTransport(pods_handler([]))) as client:
        assert await AgentDaemon(client, settings).gossip_seeds() == [Address("10.0.0.9", 7000)]
