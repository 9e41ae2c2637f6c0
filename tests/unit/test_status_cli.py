"""``purelb status`` table building (pure)."""

from __future__ import annotations

from purelb.status_cli import (
    GroupRow,
    Status,
    group_rows,
    parse_members,
    render,
    service_rows,
)


def _group(name: str, status: dict | None = None) -> dict:
    return {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
            "metadata": {"name": name, "namespace": "purelb-system", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"local": {
                "v4pools": [{"subnet": "192.0.2.0/24", "pool": "192.0.2.10-192.0.2.19",
                             "aggregation": "default"}],
                "v6pools": [{"subnet": "2001:db8::/64", "pool": "2001:db8::/64",
                             "aggregation": "default"}]}},
            **({"status": status} if status else {})}


def _svc(name: str, ips: list[str], annotations: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": "default",
                         "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def test_group_counts_come_from_status_when_the_allocator_wrote_it() -> None:
    rows = group_rows([_group("a", {"allocatedIPv4": 3, "availableIPv4": 7,
                                    "allocatedIPv6": 0,
                                    "availableIPv6": "18446744073709551616"})], [])
    assert rows == [
        GroupRow("purelb-system", "a", 4, 10, 3, 7, "status"),
        GroupRow("purelb-system", "a", 6, 18446744073709551616, 0, 18446744073709551616,
                 "status"),
    ]


def test_group_counts_are_computed_from_pools_and_services_without_status() -> None:
    services = [_svc("x", ["192.0.2.10"]), _svc("y", ["192.0.2.11", "2001:db8::5"]),
                _svc("z", ["198.51.100.1"])]  # in no pool: ignored
    rows = group_rows([_group("a")], services)
    assert rows == [GroupRow("purelb-system", "a", 4, 10, 2, 8, "computed"),
                    GroupRow("purelb-system", "a", 6, 2**64, 1, 2**64 - 1, "computed")]


def test_an_invalid_group_is_listed_with_the_reason() -> None:
    bad = _group("bad")
    bad["spec"]["local"]["v4pools"][0]["pool"] = "not-a-range"
    rows = group_rows([bad], [])
    assert len(rows) == 1 and rows[0].note.startswith("rejected:")


def test_services_show_addresses_group_and_announcing_nodes() -> None:
    rows = service_rows([
        _svc("web", ["192.0.2.10"], {"purelb.io/allocated-from": "a",
                                      "purelb.io/announcing-IPv4": "gw,eth0,192.0.2.10"}),
        _svc("new", []),
        {"metadata": {"name": "cip", "namespace": "default"}, "spec": {"type": "ClusterIP"}},
    ])
    assert [(r.name, r.addresses, r.group, r.announcing, r.note) for r in rows] == [
        ("new", (), "", (), "pending"),
        ("web", ("192.0.2.10",), "a", ("gw,eth0,192.0.2.10 (IPv4)",), ""),
    ]


def test_gossip_member_counts_are_read_from_prometheus_text() -> None:
    text = ('# HELP purelb_gossip_members Members\n'
            'purelb_gossip_members{state="alive"} 3.0\n'
            'purelb_gossip_members{state="suspect"} 1.0\n'
            'purelb_gossip_members_other{state="alive"} 9.0\n')
    assert parse_members(text) == {"alive": 3, "suspect": 1}


def test_render_shows_every_section() -> None:
    text = render(Status("http://127.0.0.1:6443", group_rows([_group("a")], []),
                         service_rows([_svc("web", ["192.0.2.10"])]),
                         members={"http://x:7472": {"alive": 2}}, hot_path="native (x)"))
    for needle in ("server: http://127.0.0.1:6443", "hot path: native (x)", "GROUPS",
                   "SERVICES", "192.0.2.10", "alive=2 suspect=0 dead=0"):
        assert needle in text
