"""KubeClient.apply (server-side apply) against our API server over loopback."""

from __future__ import annotations

import pytest

from purelb.apiserver.testing import open_test_apiserver
from purelb.kube import SERVICES, Conflict
from tests.kube_support import open_client


def _svc(port: int = 80, labels: dict | None = None) -> dict:
    meta = {"name": "web", "namespace": "default", **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]}}


async def test_apply_creates_then_is_a_no_op_then_changes_only_what_changed() -> None:
    async with open_test_apiserver() as srv, open_client(srv) as c:
        first = await c.apply(SERVICES, _svc(), field_manager="a")
        again = await c.apply(SERVICES, _svc(), field_manager="a")
        assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        changed = await c.apply(SERVICES, _svc(labels={"tier": "edge"}), field_manager="a")
        assert changed["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
        assert changed["metadata"]["labels"] == {"tier": "edge"}
        assert changed["spec"]["clusterIP"] == first["spec"]["clusterIP"]  # server-owned kept


async def test_apply_conflicts_with_another_manager_unless_forced() -> None:
    async with open_test_apiserver() as srv, open_client(srv) as c:
        await c.apply(SERVICES, _svc(labels={"tier": "a"}), field_manager="a")
        with pytest.raises(Conflict):
            await c.apply(SERVICES, _svc(labels={"tier": "b"}), field_manager="b")
        out = await c.apply(SERVICES, _svc(labels={"tier": "b"}), field_manager="b", force=True)
        assert out["metadata"]["labels"]["tier"] == "b"


async def test_apply_refuses_misuse_before_sending() -> None:
    async with open_test_apiserver() as srv, open_client(srv) as c:
        with pytest.raises(ValueError, match="field_manager"):
            await c.apply(SERVICES, _svc(), field_manager="")
        with pytest.raises(ValueError, match=r"metadata\.name"):
            await c.apply(SERVICES, {"metadata": {"namespace": "default"}}, field_manager="a")
