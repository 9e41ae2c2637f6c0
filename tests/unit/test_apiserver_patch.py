"""Patch semantics: RFC 7386 merge, RFC 6902 JSON patch, strategic merge as kubectl sends it."""

from __future__ import annotations

import copy

import pytest

from purelb.apiserver._patch import (
    PatchError,
    json_merge_patch,
    json_patch,
    merge_key,
    strategic_merge_patch,
)

SVC = {
    "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a", "b"]},
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30000},
                  {"port": 443, "nodePort": 30001}],
    },
}


def test_merge_patch_merges_maps_deletes_nulls_and_replaces_lists() -> None:
    before = copy.deepcopy(SVC)
    out = json_merge_patch(SVC, {"metadata": {"labels": {"app": None, "x": "1"}},
                                 "spec": {"ports": [{"port": 1}]}})
    assert out["metadata"]["labels"] == {"x": "1"}
    assert out["spec"]["ports"] == [{"port": 1}]
    assert out["spec"]["selector"] == {"app": "web"}
    assert before == SVC, "the input was mutated"


def test_json_patch_applies_and_reports_failures() -> None:
    out = json_patch(SVC, [{"op": "add", "path": "/spec/type", "value": "LoadBalancer"}])
    assert out["spec"]["type"] == "LoadBalancer" and "type" not in SVC["spec"]
    with pytest.raises(PatchError, match="cannot be applied"):
        json_patch(SVC, [{"op": "remove", "path": "/spec/nothere"}])
    with pytest.raises(PatchError):
        json_patch(SVC, {"op": "add"})
    with pytest.raises(PatchError):
        json_patch(SVC, [{"op": "test", "path": "/metadata/name", "value": "other"}])


def test_strategic_patch_merges_service_ports_by_port_and_keeps_node_ports() -> None:
    patch = {"spec": {"$setElementOrder/ports": [{"port": 80}],
                      "ports": [{"port": 80, "targetPort": 9090},
                                {"$patch": "delete", "port": 443}],
                      "selector": {"app": None, "tier": "fe"}}}
    out = strategic_merge_patch(SVC, patch)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "nodePort": 30000}]
    assert out["spec"]["selector"] == {"tier": "fe"}


def test_strategic_patch_orders_and_adds_list_elements() -> None:
    patch = {"spec": {"$setElementOrder/ports": [{"port": 8443}, {"port": 80}, {"port": 443}],
                      "ports": [{"port": 8443}]}}
    out = strategic_merge_patch(SVC, patch)
    assert [p["port"] for p in out["spec"]["ports"]] == [8443, 80, 443]


def test_strategic_patch_merges_containers_env_and_primitive_finalizers() -> None:
    dep = {"metadata": {"finalizers": ["a"]},
           "spec": {"template": {"spec": {"containers": [
               {"name": "c", "image": "x:1", "env": [{"name": "A", "value": "1"},
                                                    {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80}], "args": ["--a"]}]}}}}
    patch = {"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
             "spec": {"template": {"spec": {
                 "$setElementOrder/containers": [{"name": "c"}],
                 "containers": [{"name": "c", "image": "x:2", "args": ["--b"],
                                 "$setElementOrder/env": [{"name": "B"}],
                                 "env": [{"$patch": "delete", "name": "A"},
                                         {"name": "B", "value": "3"}]}]}}}}
    out = strategic_merge_patch(dep, patch)
    c = out["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "x:2" and c["args"] == ["--b"]
    assert c["env"] == [{"name": "B", "value": "3"}]
    assert c["ports"] == [{"containerPort": 80}]
    assert out["metadata"]["finalizers"] == ["b"]


def test_strategic_patch_retain_keys_and_replace_directive() -> None:
    dep = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = strategic_merge_patch(dep, {"spec": {"strategy": {"$retainKeys": ["type"],
                                                            "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    out = strategic_merge_patch(SVC, {"spec": {"$patch": "replace", "type": "ClusterIP"}})
    assert out["spec"] == {"type": "ClusterIP"}
    with pytest.raises(PatchError, match="unknown \\$patch directive"):
        strategic_merge_patch(SVC, {"spec": {"$patch": "explode"}})


def test_merge_keys_follow_the_go_type_tags() -> None:
    assert merge_key(("spec", "ports")) == "port"
    assert merge_key(("spec", "template", "spec", "containers", "ports")) == "containerPort"
    assert merge_key(("spec", "template", "spec", "containers")) == "name"
    assert merge_key(("status", "conditions")) == "type"
    assert merge_key(("spec", "tolerations")) is None
    assert merge_key(("endpoints",)) is None
