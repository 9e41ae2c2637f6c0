"""SQLite durability: every acknowledged write survives kill -9 of the server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from .apiserver_fixtures import CRD_DIR

WRITERS = 8
"""Concurrent clients, so writes are in flight (and batched) when the kill lands."""
WRITE_PHASE_S = 1.0
STARTUP_TIMEOUT_S = 20


async def _start(db: Path) -> tuple[trio.Process, str]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "purelb", "apiserver", "--listen", "127.0.0.1:0", "--db",
         str(db), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(STARTUP_TIMEOUT_S):
        while b"listening on " not in buf or not buf.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(4096)
            assert chunk, "the server exited before listening"
            buf += chunk
    url = buf.decode().split("listening on ", 1)[1].split()[0]
    return proc, url


async def _kill(proc: trio.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)
    with trio.CancelScope(shield=True):
        await proc.wait()


async def test_acknowledged_writes_survive_kill_9_and_rvs_never_repeat(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    proc, url = await _start(db)
    acked: dict[str, int] = {}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:

            async def writer(w: int) -> None:
                i = 0
                while True:
                    name = f"w{w}-{i}"
                    body = {"metadata": {"name": name}, "data": {"i": str(i)}}
                    try:
                        r = await client.post("/api/v1/namespaces/default/configmaps",
                                              json=body)
                    except httpx.TransportError:
                        return  # the server is gone: this write was never acknowledged
                    assert r.status_code == 201, r.text
                    acked[name] = int(r.json()["metadata"]["resourceVersion"])
                    i += 1

            async with trio.open_nursery() as nursery:
                for w in range(WRITERS):
                    nursery.start_soon(writer, w)
                await trio.sleep(WRITE_PHASE_S)
                await _kill(proc)  # mid-flight: writers see connection errors and stop
    finally:
        await _kill(proc)
    assert len(acked) > WRITERS, "too few writes to mean anything"
    print(f"acknowledged writes before kill -9: {len(acked)}")

    proc, url = await _start(db)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
            listed = (await client.get("/api/v1/namespaces/default/configmaps")).json()
            stored = {i["metadata"]["name"]: int(i["metadata"]["resourceVersion"])
                      for i in listed["items"]}
            missing = set(acked) - set(stored)
            assert not missing, f"{len(missing)} acknowledged writes lost: {sorted(missing)[:3]}"
            assert all(stored[n] == rv for n, rv in acked.items())
            r = await client.post("/api/v1/namespaces/default/configmaps",
                                  json={"metadata": {"name": "after-restart"}})
            new_rv = int(r.json()["metadata"]["resourceVersion"])
            assert new_rv > max(stored.values()), "a resourceVersion was handed out twice"
            assert int(listed["metadata"]["resourceVersion"]) >= max(acked.values())
    finally:
        await _kill(proc)


async def test_restart_restores_crds_and_service_allocations(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    crd_dir = CRD_DIR
    proc, url = await _start(db)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
            for f in sorted(crd_dir.glob("*.yaml")):
                r = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                      content=f.read_bytes(),
                                      headers={"Content-Type": "application/yaml"})
                assert r.status_code == 201, r.text
            r = await client.post("/api/v1/namespaces/default/services", json={
                "metadata": {"name": "a"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
            first = r.json()["spec"]
    finally:
        await _kill(proc)
    proc, url = await _start(db)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
            r = await client.get("/apis/purelb.io/v1/namespaces/default/servicegroups")
            assert r.status_code == 200 and r.json()["items"] == []
            r = await client.post("/api/v1/namespaces/default/services", json={
                "metadata": {"name": "b"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
            second = r.json()["spec"]
            assert second["clusterIP"] != first["clusterIP"]
            assert second["ports"][0]["nodePort"] != first["ports"][0]["nodePort"]
    finally:
        await _kill(proc)
