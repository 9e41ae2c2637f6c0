"""Packed Service cache entries: same content as the slimmed dict, far fewer bytes."""

from __future__ import annotations

import sys

from purelb.controllers.allocator_cache import PackedService, pack_service, unpack
from purelb.controllers.allocator_reconcile import slim_service
from purelb.kube._cache import Store, object_key

SVC = {"apiVersion": "v1", "kind": "Service",
       "metadata": {"name": "web", "namespace": "a", "uid": "u-1", "resourceVersion": "7",
                    "labels": {"app": "web"}, "managedFields": [{"manager": "kubectl"}],
                    "annotations": {"purelb.io/service-group": "default"}},
       "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP",
                                                   "targetPort": 8080}],
                "selector": {"app": "web"}, "ipFamilies": ["IPv4"]},
       "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}


def test_pack_keeps_exactly_the_slimmed_fields():
    packed = pack_service(SVC)
    assert unpack(packed) == slim_service(SVC)
    assert packed["metadata"]["name"] == "web"
    assert packed.get("status") == {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}
    assert packed.get("nothing") is None
    assert set(packed) == {"metadata", "spec", "status"} and len(packed) == 3


def test_reads_are_private_copies():
    packed = pack_service(SVC)
    copy = unpack(packed)
    assert copy is not None
    copy["metadata"]["name"] = "changed"
    assert packed["metadata"]["name"] == "web"


def test_unpack_passes_plain_objects_and_none_through():
    plain = {"metadata": {"name": "x"}}
    assert unpack(plain) is plain
    assert unpack(None) is None


def test_the_generic_store_keys_and_diffs_packed_entries():
    store = Store()
    store.upsert(pack_service(SVC))
    assert object_key(store.get("a", "web")) == ("a", "web")
    newer = {**SVC, "metadata": {**SVC["metadata"], "resourceVersion": "8"}}
    changes = store.replace_all([pack_service(newer)])
    assert [c.kind.value for c in changes] == ["MODIFIED"]


def test_packed_is_several_times_smaller_than_the_slim_dict():
    def deep_size(obj: object) -> int:
        if isinstance(obj, dict):
            return sys.getsizeof(obj) + sum(deep_size(k) + deep_size(v) for k, v in obj.items())
        if isinstance(obj, list):
            return sys.getsizeof(obj) + sum(deep_size(v) for v in obj)
        return sys.getsizeof(obj)

    packed = pack_service(SVC)
    assert isinstance(packed, PackedService)
    assert sys.getsizeof(packed) + sys.getsizeof(packed.raw) * 3 < deep_size(slim_service(SVC))
