"""The client's TLS paths (CA pinning, bearer token, client certificates) against a tiny
trio TLS server on 127.0.0.1, with certificates made by ``cryptography``."""

from __future__ import annotations

import base64
import functools
import json
import ssl
from pathlib import Path

import h11
import pytest
import trio
import yaml

from purelb.apiserver._server import ApiServer, ApiServerConfig, serve_apiserver
from purelb.kube import (
    SERVICES,
    ApiUnavailable,
    ClientSettings,
    KubeClient,
    Unauthorized,
    load_incluster_config,
    load_kubeconfig,
)
from tests.kube_tls import Pki, make_pki

MAX_REQUEST_BYTES = 65536


async def _handle(stream: trio.SSLStream) -> None:
    """Answer one request with a JSON object describing what the server saw."""
    conn = h11.Connection(h11.SERVER)
    request = None
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(MAX_REQUEST_BYTES))
                continue
            if isinstance(event, h11.Request):
                request = event
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if request is None:
            return
        peer = stream.getpeercert()
        cn = ""
        if peer:
            cn = dict(x[0] for x in peer["subject"]).get("commonName", "")
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        body = json.dumps({"kind": "Service", "metadata": {"name": "web", "namespace": "a"},
                           "seen": {"auth": headers.get("authorization", ""),
                                    "client_cn": cn, "path": request.target.decode()}}).encode()
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Connection", "close")])))
        await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
    except (trio.BrokenResourceError, ssl.SSLError, h11.RemoteProtocolError):
        pass  # a client that failed its handshake: nothing to answer
    finally:
        with trio.move_on_after(1):
            await stream.aclose()


async def _start_server(nursery: trio.Nursery, pki: Pki, tmp_path: Path, *,
                        require_client_cert: bool) -> int:
    (tmp_path / "srv.crt").write_bytes(pki.server_cert_pem)
    (tmp_path / "srv.key").write_bytes(pki.server_key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    if require_client_cert:
        ctx.load_verify_locations(cadata=pki.ca_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED
    listeners = await nursery.start(functools.partial(
        trio.serve_ssl_over_tcp, _handle, 0, ctx, host="127.0.0.1",
        https_compatible=True))
    return listeners[0].transport_listener.socket.getsockname()[1]


def _kubeconfig(path: Path, port: int, *, ca: bytes | None, user: dict,
                insecure: bool = False) -> Path:
    cluster: dict = {"server": f"https://127.0.0.1:{port}"}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x"}))
    return path


@pytest.fixture(scope="module")
def pki():
    return make_pki()


SETTINGS = ClientSettings(rate_limit=None, connect_timeout_s=5.0, request_timeout_s=5.0)


async def test_tls_with_ca_data_and_bearer_token(nursery, pki, tmp_path):
    port = await _start_server(nursery, pki, tmp_path, require_client_cert=False)
    cfg = load_kubeconfig([_kubeconfig(tmp_path / "kc", port, ca=pki.ca_pem,
                                       user={"token": "s3cret"})])
    async with KubeClient(cfg, settings=SETTINGS) as c:
        obj = await c.get(SERVICES, "web", namespace="a")
    assert obj["seen"]["auth"] == "Bearer s3cret"
    assert obj["seen"]["path"] == "/api/v1/namespaces/a/services/web"


async def test_tls_with_client_certificate(nursery, pki, tmp_path):
    port = await _start_server(nursery, pki, tmp_path, require_client_cert=True)
    user = {"client-certificate-data": base64.b64encode(pki.client_cert_pem).decode(),
            "client-key-data": base64.b64encode(pki.client_key_pem).decode()}
    cfg = load_kubeconfig([_kubeconfig(tmp_path / "kc", port, ca=pki.ca_pem, user=user)])
    async with KubeClient(cfg, settings=SETTINGS) as c:
        obj = await c.get(SERVICES, "web", namespace="a")
    assert obj["seen"]["client_cn"] == "purelb-client" and obj["seen"]["auth"] == ""


async def test_tls_with_an_untrusted_server_is_api_unavailable(nursery, pki, tmp_path):
    port = await _start_server(nursery, pki, tmp_path, require_client_cert=False)
    other = make_pki()
    cfg = load_kubeconfig([_kubeconfig(tmp_path / "kc", port, ca=other.ca_pem,
                                       user={"token": "t"})])
    async with KubeClient(cfg, settings=SETTINGS) as c:
        with pytest.raises(ApiUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await c.get(SERVICES, "web", namespace="a")


async def test_tls_insecure_skip_verify_accepts_any_server(nursery, pki, tmp_path):
    port = await _start_server(nursery, pki, tmp_path, require_client_cert=False)
    cfg = load_kubeconfig([_kubeconfig(tmp_path / "kc", port, ca=None, user={"token": "t"},
                                       insecure=True)])
    async with KubeClient(cfg, settings=SETTINGS) as c:
        assert (await c.get(SERVICES, "web", namespace="a"))["seen"]["auth"] == "Bearer t"


async def test_missing_client_certificate_is_api_unavailable(nursery, pki, tmp_path):
    port = await _start_server(nursery, pki, tmp_path, require_client_cert=True)
    cfg = load_kubeconfig([_kubeconfig(tmp_path / "kc", port, ca=pki.ca_pem,
                                       user={"token": "t"})])
    async with KubeClient(cfg, settings=SETTINGS) as c:
        with pytest.raises(ApiUnavailable):
            await c.get(SERVICES, "web", namespace="a")


async def test_real_apiserver_over_https_with_a_rotating_token_file(nursery, pki, tmp_path):
    """Verify the in-cluster path end to end: CA file, token file, rotation after a 401."""
    (tmp_path / "srv.crt").write_bytes(pki.server_cert_pem)
    (tmp_path / "srv.key").write_bytes(pki.server_key_pem)
    cfg = ApiServerConfig(tls_cert=tmp_path / "srv.crt", tls_key=tmp_path / "srv.key",
                          tokens={"token-v1": "purelb", "token-v2": "purelb"})
    server = ApiServer(cfg)
    port = await nursery.start(functools.partial(serve_apiserver, cfg, server=server))
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "ca.crt").write_bytes(pki.ca_pem)
    (sa / "token").write_text("expired-token")
    (sa / "namespace").write_text("default")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
    kube = load_incluster_config(environ=env, serviceaccount_dir=sa)
    async with KubeClient(kube, settings=SETTINGS) as c:
        with pytest.raises(Unauthorized):
            await c.list(SERVICES, namespace="default")
        (sa / "token").write_text("token-v1")  # kubelet rotated the token
        assert (await c.list(SERVICES, namespace="default"))["kind"] == "ServiceList"
        (sa / "token").write_text("token-v2")
        del server.api.tokens["token-v1"]  # the old token is revoked: 401, re-read, retry
        assert (await c.list(SERVICES, namespace="default"))["kind"] == "ServiceList"
