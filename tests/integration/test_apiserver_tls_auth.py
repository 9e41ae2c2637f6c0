"""HTTPS with bearer tokens (the CLI's off-loopback mode, forced here with --tls) and the
per-user audit set."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
import yaml

from purelb.apiserver.testing import open_test_apiserver

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
HAVE_KUBECTL = os.path.exists(KUBECTL)
STARTUP_TIMEOUT_S = 20


async def _start_tls(tmp: Path) -> tuple[trio.Process, str, Path]:
    kc = tmp / "kubeconfig"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "purelb", "apiserver", "--listen", "127.0.0.1:0", "--tls",
         "--kubeconfig-out", str(kc), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(STARTUP_TIMEOUT_S):
        while not (b"listening on " in buf and buf.endswith(b"\n")):
            chunk = await proc.stdout.receive_some(4096)
            assert chunk, "the server exited before listening"
            buf += chunk
    return proc, buf.decode().split("listening on ", 1)[1].split()[0], kc


async def _stop(proc: trio.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGTERM)
    with trio.CancelScope(shield=True), trio.move_on_after(10) as scope:
        await proc.wait()
    if scope.cancelled_caught:
        proc.kill()
        await proc.wait()


async def test_tls_server_requires_the_token_and_kubectl_uses_it(tmp_path: Path) -> None:
    proc, url, kc = await _start_tls(tmp_path)
    try:
        assert url.startswith("https://127.0.0.1:")
        assert stat.S_IMODE(kc.stat().st_mode) == 0o600
        cfg = yaml.safe_load(kc.read_text())
        token = cfg["users"][0]["user"]["token"]
        assert cfg["clusters"][0]["cluster"]["certificate-authority-data"]
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        async with httpx.AsyncClient(base_url=url, verify=ctx) as client:
            r = await client.get("/api/v1/namespaces")
            assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
            r = await client.get("/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401
            r = await client.get("/api/v1/namespaces",
                                 headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and len(r.json()["items"]) == 4
        if HAVE_KUBECTL:
            env = {**os.environ, "KUBECONFIG": str(kc), "HOME": str(tmp_path),
                   "KUBECACHEDIR": str(tmp_path / "cache")}
            with trio.fail_after(30):
                ok = await trio.run_process([KUBECTL, "get", "ns", "-o", "name"], env=env,
                                            capture_stdout=True, capture_stderr=True)
            assert b"namespace/default" in ok.stdout
            cfg["users"][0]["user"]["token"] = "wrong"
            bad = tmp_path / "bad-kubeconfig"
            bad.write_text(yaml.safe_dump(cfg))
            with trio.fail_after(30):
                res = await trio.run_process([KUBECTL, "get", "ns"], check=False,
                                             env={**env, "KUBECONFIG": str(bad)},
                                             capture_stdout=True, capture_stderr=True)
            assert res.returncode == 1 and b"Unauthorized" in res.stderr
    finally:
        await _stop(proc)


async def test_audit_set_is_kept_per_token_user() -> None:
    tokens = {"t-alloc": "system:serviceaccount:purelb:allocator",
              "t-agent": "system:serviceaccount:purelb:agent"}
    async with open_test_apiserver(tokens=tokens) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as client:
            alloc = {"Authorization": "Bearer t-alloc"}
            agent = {"Authorization": "Bearer t-agent"}
            await client.get("/api/v1/services", headers=alloc)
            await client.patch("/api/v1/namespaces/default/services/x/status", headers={
                **alloc, "Content-Type": "application/merge-patch+json"}, content="{}")
            await client.get("/apis/coordination.k8s.io/v1/namespaces/purelb/leases/n1",
                             headers=agent)
            r = await client.get("/api/v1/services")
            assert r.status_code == 401
        records = srv.server.audit_records()
        assert records == {
            "system:serviceaccount:purelb:allocator": {
                ("list", "", "services", "", ""),
                ("patch", "", "services", "status", "default"),
            },
            "system:serviceaccount:purelb:agent": {
                ("get", "coordination.k8s.io", "leases", "", "purelb"),
            },
        }


async def test_tls_restart_keeps_the_ca_and_token(tmp_path: Path) -> None:
    proc, _, kc = await _start_tls(tmp_path)
    await _stop(proc)
    first = yaml.safe_load(kc.read_text())
    ca = (tmp_path / "ca.crt").read_bytes()
    proc, url, kc = await _start_tls(tmp_path)
    try:
        again = yaml.safe_load(kc.read_text())
        assert again["users"] == first["users"]
        assert (tmp_path / "ca.crt").read_bytes() == ca
        assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        token = first["users"][0]["user"]["token"]
        async with httpx.AsyncClient(base_url=url, verify=ctx) as client:
            r = await client.get("/version", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
    finally:
        await _stop(proc)


def test_cli_refuses_generated_tls_without_a_place_for_ca_and_token() -> None:
    res = subprocess.run([sys.executable, "-m", "purelb", "apiserver", "--listen",
                          "127.0.0.1:0", "--tls"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2 and "--kubeconfig-out" in res.stderr


@pytest.mark.parametrize("listen", ["127.0.0.1:x", "nohost:80", "127.0.0.1"])
def test_cli_rejects_a_bad_listen_address(listen: str) -> None:
    res = subprocess.run([sys.executable, "-m", "purelb", "apiserver", "--listen", listen],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2 and listen in res.stderr


async def test_test_fixture_can_serve_https_with_a_token() -> None:
    async with open_test_apiserver(tls=True) as srv:
        assert srv.url.startswith("https://")
        cfg = yaml.safe_load(srv.kubeconfig.read_text())
        token = cfg["users"][0]["user"]["token"]
        ctx = ssl.create_default_context(cafile=str(srv.tmpdir / "ca.crt"))
        async with httpx.AsyncClient(base_url=srv.url, verify=ctx) as client:
            assert (await client.get("/api")).status_code == 401
            r = await client.get("/api", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
        assert srv.server.audit_records("admin") == set()  # /api is not a resource request
