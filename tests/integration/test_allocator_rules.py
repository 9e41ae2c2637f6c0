"""The IPAM rules end to end: real API server, real HTTP, the allocator daemon as a task.

Each test creates objects through the API the way a user would and reads back what the
daemon wrote (status, annotations, Events, ServiceGroup status).
"""

from __future__ import annotations

import ipaddress

import httpx

from purelb.kube import SERVICE_GROUPS, SERVICES, PatchType
from tests.integration.allocator_support import (
    APP_NS,
    NS,
    check_invariants,
    group,
    ingress,
    open_world,
    running_daemon,
    service,
    settings,
)

SMALL = group("default", ("10.0.0.0/30", "10.0.0.0/24"))  # 4 addresses
DUAL = group("dual", ("10.1.0.0/29", "10.1.0.0/24"), ("fd00:db8:ff::/125", "fd00:db8:ff::/64"))


async def test_create_writes_ingress_brand_event_and_group_status():
    async with open_world(SMALL) as w, running_daemon(w) as daemon:
        await w.client.create(SERVICES, service("web"))
        assert await w.wait_ingress("web") == ["10.0.0.0"]
        obj = await w.svc("web")
        ann = obj["metadata"]["annotations"]
        assert ann["purelb.io/allocated-by"] == "PureLB"
        assert ann["purelb.io/allocated-from"] == "default"
        assert ann["purelb.io/pool-type"] == "local"
        assert obj["status"]["loadBalancer"]["ingress"] == [{"ip": "10.0.0.0", "ipMode": "VIP"}]

        async def assigned():
            return "AddressAssigned" in await w.reasons("web")
        await w.eventually(assigned, what="an AddressAssigned event")

        async def counted():
            st = await w.group_status("default")
            return st if st.get("allocatedIPv4") == 1 else None
        st = await w.eventually(counted, what="group status allocatedIPv4=1")
        assert st["availableIPv4"] == 3
        assert st["conditions"][0]["type"] == "Valid" and st["conditions"][0]["status"] == "True"
        async with httpx.AsyncClient() as h:
            text = (await h.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics")).text
            assert 'purelb_address_pool_addresses_in_use{family="IPv4",pool="default"} 1.0' in text
            assert (await h.get(f"http://127.0.0.1:{daemon.metrics_port}/readyz")).status_code \
                == 200


async def test_delete_frees_the_address_for_a_waiting_service():
    async with open_world(SMALL) as w, running_daemon(w) as daemon:
        for i in range(4):
            await w.client.create(SERVICES, service(f"s{i}"))
        for i in range(4):
            await w.wait_ingress(f"s{i}")
        await w.client.create(SERVICES, service("late"))

        async def failed():
            return "AllocationFailed" in await w.reasons("late")
        await w.eventually(failed, what="AllocationFailed on an exhausted pool")
        notes = [n for _, r, n in await w.events("late") if r == "AllocationFailed"]
        assert "exhaust" in notes[0].lower() or "no free" in notes[0].lower(), notes
        freed = ingress(await w.svc("s2"))
        await w.client.delete(SERVICES, "s2", namespace=APP_NS)
        assert await w.wait_ingress("late") == freed
        async with httpx.AsyncClient() as h:
            text = (await h.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics")).text
        assert ('purelb_address_pool_allocation_rejected_total{pool="default",'
                'reason="exhausted"}') in text


async def test_type_change_releases_and_clears_our_annotations():
    async with open_world(SMALL) as w, running_daemon(w):
        await w.client.create(SERVICES, service("web"))
        await w.wait_ingress("web")
        await w.client.patch(SERVICES, "web", {"spec": {"type": "ClusterIP"}}, namespace=APP_NS)

        async def cleared():
            obj = await w.svc("web")
            ann = obj["metadata"].get("annotations") or {}
            return not ingress(obj) and "purelb.io/allocated-by" not in ann
        await w.eventually(cleared, what="ingress and brand removed")

        async def released():
            return "AddressReleased" in await w.reasons("web")
        await w.eventually(released, what="an AddressReleased event")
        await w.client.patch(SERVICES, "web", {"spec": {"type": "LoadBalancer"}},
                             namespace=APP_NS)
        assert await w.wait_ingress("web") == ["10.0.0.0"]


async def test_dual_stack_families_and_single_stack_ipv6():
    async with open_world(DUAL) as w, running_daemon(w):
        sg = {"purelb.io/service-group": "dual"}
        await w.client.create(SERVICES, service("both", annotations=sg,
                                                ipFamilyPolicy="RequireDualStack"))
        await w.client.create(SERVICES, service("six", annotations=sg, ipFamilyPolicy="SingleStack",
                                                ipFamilies=["IPv6"]))
        both = await w.wait_ingress("both", 2)
        assert {ipaddress.ip_address(ip).version for ip in both} == {4, 6}
        six = await w.wait_ingress("six", 1)
        assert ipaddress.ip_address(six[0]).version == 6
        # dropping a family releases only that family; the kept address does not move
        spec = (await w.svc("both"))["spec"]
        await w.client.patch(SERVICES, "both", {"spec": {
            "ipFamilyPolicy": "SingleStack", "ipFamilies": spec["ipFamilies"][:1],
            "clusterIPs": spec["clusterIPs"][:1]}}, namespace=APP_NS, patch_type=PatchType.MERGE)

        async def single():
            ips = ingress(await w.svc("both"))
            return ips if len(ips) == 1 else None
        kept = await w.eventually(single, what="one family left")
        assert kept[0] in both


async def test_sharing_key_with_disjoint_ports_shares_and_a_port_clash_fails():
    async with open_world(SMALL) as w, running_daemon(w):
        key = {"purelb.io/allow-shared-ip": "k"}
        await w.client.create(SERVICES, service("http", annotations=key, ports=(80,)))
        await w.client.create(SERVICES, service("https", annotations=key, ports=(443,)))
        a = await w.wait_ingress("http")
        b = await w.wait_ingress("https")
        assert a == b
        await w.client.create(SERVICES, service("clash", annotations=key, ports=(80,)))

        async def failed():
            return any(r == "AllocationFailed" and "port" in n.lower()
                       for _, r, n in await w.events("clash"))
        await w.eventually(failed, what="a port-conflict AllocationFailed")
        assert not ingress(await w.svc("clash"))
        assert check_invariants(await w.services()) == []


async def test_specific_address_annotation_and_deprecated_load_balancer_ip():
    async with open_world(SMALL) as w, running_daemon(w):
        await w.client.create(SERVICES, service(
            "pinned", annotations={"purelb.io/addresses": "10.0.0.3"}))
        assert await w.wait_ingress("pinned") == ["10.0.0.3"]
        await w.client.create(SERVICES, service("legacy", loadBalancerIP="10.0.0.2"))
        assert await w.wait_ingress("legacy") == ["10.0.0.2"]

        async def deprecated():
            return "DeprecationWarning" in await w.reasons("legacy")
        await w.eventually(deprecated, what="a DeprecationWarning event")
        # an address outside every pool is refused with the reason
        await w.client.create(SERVICES, service(
            "outside", annotations={"purelb.io/addresses": "192.0.2.1"}))

        async def refused():
            return any(r == "AllocationFailed" and "192.0.2.1" in n
                       for _, r, n in await w.events("outside"))
        await w.eventually(refused, what="AllocationFailed naming 192.0.2.1")


async def test_load_balancer_class_and_default_announcer():
    async with open_world(SMALL) as w, running_daemon(w, settings(allocator=_no_default())):
        await w.client.create(SERVICES, service("other", loadBalancerClass="example.com/lb"))
        await w.client.create(SERVICES, service("classless"))
        await w.client.create(SERVICES, service("ours", loadBalancerClass="purelb.io/purelb"))
        assert await w.wait_ingress("ours") == ["10.0.0.0"]
        # the daemon has processed the others by now (one queue); they stay untouched
        for name in ("other", "classless"):
            obj = await w.svc(name)
            assert not ingress(obj)
            assert "purelb.io/allocated-by" not in (obj["metadata"].get("annotations") or {})


def _no_default():
    from purelb.ipam.allocator import AllocatorSettings
    return AllocatorSettings(default_announcer=False)


async def test_servicegroup_changes_reevaluate_pending_only_and_invalid_groups_are_reported():
    async with open_world(SMALL) as w, running_daemon(w):
        await w.client.create(SERVICES, service("web"))
        assert await w.wait_ingress("web") == ["10.0.0.0"]
        await w.client.create(SERVICES, service(
            "waiting", annotations={"purelb.io/service-group": "extra"}))

        async def unknown():
            return "AllocationFailed" in await w.reasons("waiting")
        await w.eventually(unknown, what="AllocationFailed for an unknown group")
        # an invalid group (overlapping the default pool) is rejected; default keeps working
        bad = group("bad", ("10.0.0.2/31", "10.0.0.0/24"))
        await w.client.create(SERVICE_GROUPS, bad, namespace=NS)

        async def invalid():
            st = await w.group_status("bad")
            conds = st.get("conditions") or []
            return conds and conds[0]["status"] == "False" and conds[0]
        cond = await w.eventually(invalid, what="Valid=False on the bad group")
        assert cond["reason"] == "Overlap" and "10.0.0.2/31" in cond["message"]

        async def warned():
            return "ParseFailed" in await w.reasons("bad", NS)
        await w.eventually(warned, what="a ParseFailed Warning event on the group")
        await w.client.create(SERVICES, service("second"))
        assert await w.wait_ingress("second") == ["10.0.0.1"]
        # the group the waiting Service names appears: it is allocated, web does not move
        await w.client.create(SERVICE_GROUPS, group("extra", ("10.9.0.0/30", "10.9.0.0/24")),
                              namespace=NS)
        assert await w.wait_ingress("waiting") == ["10.9.0.0"]
        # editing the default pool away from web's address never revokes it
        await w.client.patch(SERVICE_GROUPS, "default", {"spec": {"local": {"v4pools": [
            {"pool": "10.0.0.8/30", "subnet": "10.0.0.0/24"}]}}}, namespace=NS)
        await w.client.create(SERVICES, service("after"))
        assert await w.wait_ingress("after") == ["10.0.0.8"]
        assert ingress(await w.svc("web")) == ["10.0.0.0"]
        assert check_invariants(await w.services()) == []


async def test_group_status_counts_a_64_bit_ipv6_pool_exactly():
    big = group("v6", ("fd00:db8:ff::/64", "fd00:db8:ff::/64"))
    async with open_world(big) as w, running_daemon(w):
        await w.client.create(SERVICES, service(
            "six", annotations={"purelb.io/service-group": "v6"}, ipFamilyPolicy="SingleStack",
            ipFamilies=["IPv6"]))
        await w.wait_ingress("six")

        async def counted():
            st = await w.group_status("v6")
            return st if st.get("allocatedIPv6") == 1 else None
        st = await w.eventually(counted, what="allocatedIPv6=1")
        assert st["availableIPv6"] == str(2**64 - 1)  # beyond 2**53: an exact decimal string


async def test_the_ingress_write_leaves_other_status_fields_alone():
    cond = {"type": "example.com/Ready", "status": "True", "reason": "Test", "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}
    async with open_world(SMALL) as w, running_daemon(w):
        await w.client.create(SERVICES, service("web", type="ClusterIP"))
        await w.client.patch_status(SERVICES, "web", {"status": {"conditions": [cond]}},
                                    namespace=APP_NS)
        await w.client.patch(SERVICES, "web", {"spec": {"type": "LoadBalancer"}},
                             namespace=APP_NS)
        assert await w.wait_ingress("web") == ["10.0.0.0"]
        assert (await w.svc("web"))["status"]["conditions"] == [cond]
