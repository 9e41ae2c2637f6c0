"""Which of two overlapping ServiceGroups keeps its pools (a newcomer never wins)."""

from __future__ import annotations

from purelb.model import validate_service_groups


def _group(name: str, pool: str, *, created: str = "", valid: bool | None = None) -> dict:
    obj: dict = {"apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
                 "metadata": {"name": name, "namespace": "purelb-system"},
                 "spec": {"local": {"v4pool": {"pool": pool, "subnet": "10.0.0.0/24"}}}}
    if created:
        obj["metadata"]["creationTimestamp"] = created
    if valid is not None:
        obj["status"] = {"conditions": [{"type": "Valid", "status": str(valid)}]}
    return obj


def test_the_older_group_wins_an_overlap_whatever_the_names():
    old = _group("zeta", "10.0.0.0/30", created="2026-01-01T00:00:00Z")
    new = _group("alpha", "10.0.0.2/31", created="2026-01-02T00:00:00Z")
    result = validate_service_groups([new, old])
    assert [g.name for g in result.accepted] == ["zeta"]
    assert [r.name for r in result.rejected] == ["alpha"]


def test_a_group_accepted_before_wins_over_a_same_second_newcomer():
    stamp = "2026-01-01T00:00:00Z"
    working = _group("zeta", "10.0.0.0/30", created=stamp, valid=True)
    newcomer = _group("alpha", "10.0.0.2/31", created=stamp)
    result = validate_service_groups([newcomer, working])
    assert [g.name for g in result.accepted] == ["zeta"]


def test_without_timestamps_or_status_the_name_order_decides_as_before():
    result = validate_service_groups([_group("b", "10.0.0.0/30"), _group("a", "10.0.0.2/31")])
    assert [g.name for g in result.accepted] == ["a"]
