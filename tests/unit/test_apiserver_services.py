"""Service defaulting and allocation, as the real server does it."""

from __future__ import annotations

from typing import Any

import pytest

from purelb.apiserver._errors import StatusError
from purelb.apiserver._services import ServiceAllocator


def svc(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], **spec}}


def create(alloc: ServiceAllocator, body: dict[str, Any]) -> dict[str, Any]:
    plan = alloc.plan(body, None)
    alloc.apply(plan)
    return plan.obj


def fields(err: pytest.ExceptionInfo[StatusError]) -> list[str]:
    return [c["field"] for c in err.value.details["causes"]]


def test_defaults_type_protocol_target_port_policy_and_family() -> None:
    body = svc()
    out = create(ServiceAllocator(), body)["spec"]
    assert out["type"] == "ClusterIP" and out["sessionAffinity"] == "None"
    assert out["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert out["ipFamilyPolicy"] == "SingleStack" and out["ipFamilies"] == ["IPv4"]
    assert out["clusterIP"] == out["clusterIPs"][0] and out["clusterIP"].startswith("10.9")
    assert "nodePort" not in out["ports"][0] and body["spec"].get("type") is None


def test_load_balancer_gets_node_ports_unless_disabled() -> None:
    alloc = ServiceAllocator(node_port_range=(30000, 30010))
    lb = create(alloc, svc(type="LoadBalancer"))["spec"]
    assert lb["ports"][0]["nodePort"] == 30000 and lb["allocateLoadBalancerNodePorts"] is True
    assert lb["externalTrafficPolicy"] == "Cluster"
    bare = create(alloc, svc(type="LoadBalancer", allocateLoadBalancerNodePorts=False))["spec"]
    assert "nodePort" not in bare["ports"][0]
    local = create(alloc, svc(type="LoadBalancer", externalTrafficPolicy="Local"))["spec"]
    assert local["healthCheckNodePort"] not in (30000, local["ports"][0]["nodePort"])


def test_dual_stack_policies_pick_families() -> None:
    alloc = ServiceAllocator()
    prefer = create(alloc, svc(ipFamilyPolicy="PreferDualStack"))["spec"]
    assert prefer["ipFamilies"] == ["IPv4", "IPv6"] and len(prefer["clusterIPs"]) == 2
    v6 = create(alloc, svc(ipFamilies=["IPv6"]))["spec"]
    assert v6["ipFamilies"] == ["IPv6"] and ":" in v6["clusterIP"]
    single = ServiceAllocator(cidrs=("10.0.0.0/24",))
    assert create(single, svc(ipFamilyPolicy="PreferDualStack"))["spec"]["ipFamilies"] == [
        "IPv4"]
    with pytest.raises(StatusError) as err:
        single.plan(svc(ipFamilyPolicy="RequireDualStack"), None)
    assert fields(err) == ["spec.ipFamilyPolicy"]


def test_requested_ips_and_ports_are_checked_for_range_and_reuse() -> None:
    alloc = ServiceAllocator()
    create(alloc, svc(clusterIP="10.96.0.50", type="NodePort", ports=[{"port": 80,
                                                                      "nodePort": 30080}]))
    with pytest.raises(StatusError) as err:
        alloc.plan(svc(clusterIP="10.96.0.50"), None)
    assert err.value.code == 422 and fields(err) == ["spec.clusterIPs[0]"]
    with pytest.raises(StatusError) as err:
        alloc.plan(svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]), None)
    assert fields(err) == ["spec.ports[0].nodePort"]
    with pytest.raises(StatusError) as err:
        alloc.plan(svc(type="NodePort", ports=[{"port": 80, "nodePort": 80}]), None)
    assert "not in the valid range" in err.value.message


def test_update_keeps_allocations_and_rejects_immutable_changes() -> None:
    alloc = ServiceAllocator()
    old = create(alloc, svc(type="LoadBalancer", loadBalancerClass="purelb.io/purelb"))
    upd = svc(type="LoadBalancer", loadBalancerClass="purelb.io/purelb")
    upd["metadata"] = old["metadata"]
    plan = alloc.plan(upd, old)
    assert plan.obj["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert plan.obj["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]
    assert not plan.ips_added and not plan.ports_added
    with pytest.raises(StatusError) as err:
        alloc.plan(svc(type="LoadBalancer", loadBalancerClass="other"), old)
    assert fields(err) == ["spec.loadBalancerClass"]
    with pytest.raises(StatusError) as err:
        alloc.plan(svc(type="LoadBalancer", clusterIP="10.96.0.99",
                       loadBalancerClass="purelb.io/purelb"), old)
    assert fields(err) == ["spec.clusterIP"]


def test_type_change_to_cluster_ip_releases_node_ports() -> None:
    alloc = ServiceAllocator()
    old = create(alloc, svc(type="NodePort"))
    plan = alloc.plan({"metadata": old["metadata"], "spec": {
        **old["spec"], "type": "ClusterIP", "externalTrafficPolicy": None}}, old)
    assert "nodePort" not in plan.obj["spec"]["ports"][0]
    assert plan.ports_released == {old["spec"]["ports"][0]["nodePort"]}


def test_release_frees_values_for_reuse() -> None:
    alloc = ServiceAllocator(cidrs=("10.0.0.0/30",), node_port_range=(30000, 30000))
    a = create(alloc, svc(type="NodePort"))
    with pytest.raises(StatusError):
        alloc.plan(svc(type="NodePort"), None)
    alloc.release(a)
    b = create(alloc, svc(type="NodePort"))
    assert b["spec"]["ports"][0]["nodePort"] == 30000


def test_external_name_has_no_cluster_ip_and_needs_a_name() -> None:
    out = create(ServiceAllocator(), {"metadata": {"name": "x"},
                                      "spec": {"type": "ExternalName", "externalName": "a.b"}})
    assert "clusterIP" not in out["spec"] and "ipFamilies" not in out["spec"]
    with pytest.raises(StatusError) as err:
        ServiceAllocator().plan({"metadata": {"name": "x"}, "spec": {"type": "ExternalName"}},
                                None)
    assert fields(err) == ["spec.externalName"]
