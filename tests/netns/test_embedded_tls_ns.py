"""Off loopback, embedded mode serves HTTPS with a generated bearer token only.

Inside a fresh namespace (so nothing listens on the host's interfaces): listen on the
namespace's LAN address, then check the kubeconfig (https, CA, token), that kubectl works
with it, that a request without the token gets 401, and that a restart keeps the token.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.integration.embedded_support

from tests.integration.embedded_support import EXAMPLES, embedded  # noqa: E402

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
ADDR = "172.31.255.1"


@pytest.fixture
def netns() -> Iterator[str]:
    ns = f"ple{os.getpid()}t"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "e0", "type", "ifb"],
                    ["addr", "add", f"{ADDR}/24", "dev", "e0"], ["link", "set", "e0", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        yield ns
    finally:
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  check=False).stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _in_ns(ns: str, code: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.root
def test_off_loopback_serves_https_with_a_generated_token_only(netns: str,
                                                                tmp_path: Path) -> None:
    state = tmp_path / "state"
    flags = ("--no-netlink", "--listen", f"{ADDR}:0")
    with embedded(state, [EXAMPLES / "edge-gateway.yaml"], netns=netns, extra=flags) as e:
        assert e.url.startswith(f"https://{ADDR}:")
        cfg = yaml.safe_load(e.kubeconfig.read_text())
        token = cfg["users"][0]["user"]["token"]
        assert token and cfg["clusters"][0]["cluster"]["certificate-authority-data"]
        assert stat.S_IMODE((state / "token").stat().st_mode) == 0o600
        probe = (
            "import httpx, ssl, base64, yaml, sys\n"
            f"cfg = yaml.safe_load(open({str(e.kubeconfig)!r}))\n"
            "ca = base64.b64decode(cfg['clusters'][0]['cluster']['certificate-authority-data'])\n"
            "ctx = ssl.create_default_context(cadata=ca.decode())\n"
            "url = cfg['clusters'][0]['cluster']['server'] + '/api/v1/services'\n"
            "tok = cfg['users'][0]['user']['token']\n"
            "print(httpx.get(url, verify=ctx).status_code,\n"
            "      httpx.get(url, verify=ctx, headers={'Authorization': 'Bearer ' + tok})"
            ".status_code)\n")
        assert _in_ns(netns, probe).split() == ["401", "200"]
        if os.path.exists(KUBECTL):
            env = {**os.environ, "KUBECONFIG": str(e.kubeconfig), "HOME": str(tmp_path),
                   "KUBECACHEDIR": str(tmp_path / "cache")}
            res = subprocess.run(["ip", "netns", "exec", netns, KUBECTL, "get", "svc", "web"],
                                 env=env, capture_output=True, text=True, timeout=60,
                                 check=False)
            assert res.returncode == 0 and "web" in res.stdout, res.stderr
        assert e.stop() == 0
    with embedded(state, [EXAMPLES / "edge-gateway.yaml"], netns=netns, extra=flags) as e:
        again = yaml.safe_load(e.kubeconfig.read_text())["users"][0]["user"]["token"]
    assert again == token
