"""Config loading: kubeconfig variants, in-cluster, precedence, TLS material, token rotation."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import trio
import yaml

from purelb.errors import ConfigError
from purelb.kube import (
    ClusterConfig,
    TokenSource,
    load_config,
    load_incluster_config,
    load_kubeconfig,
    make_ssl_context,
)
from tests.kube_tls import make_pki


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
                "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def pki():
    return make_pki()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path: Path, *, cluster: dict, user: dict, namespace: str | None = None,
                     name: str = "ctx", current: str | None = "ctx") -> Path:
    ctx = {"cluster": "c1", "user": "u1"}
    if namespace:
        ctx["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c1", "cluster": cluster}],
        "users": [{"name": "u1", "user": user}],
        "contexts": [{"name": name, "context": ctx}],
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_with_bearer_token_and_ca_data_loads_all_fields(tmp_path, pki):
    kc = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": "https://127.0.0.1:6443/",
                 "certificate-authority-data": _b64(pki.ca_pem)},
        user={"token": "abc123"}, namespace="purelb")
    cfg = load_kubeconfig([kc])
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.token == "abc123"
    assert cfg.ca_pem == pki.ca_pem
    assert cfg.namespace == "purelb"
    assert "abc123" not in repr(cfg), "tokens must never appear in repr"


def test_kubeconfig_client_certificate_data_builds_a_tls_context(tmp_path, pki):
    kc = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": "https://127.0.0.1:6443",
                 "certificate-authority-data": _b64(pki.ca_pem)},
        user={"client-certificate-data": _b64(pki.client_cert_pem),
              "client-key-data": _b64(pki.client_key_pem)})
    cfg = load_kubeconfig([kc])
    assert cfg.client_cert_pem == pki.client_cert_pem
    ctx = make_ssl_context(cfg)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


def test_kubeconfig_file_references_resolve_relative_to_the_kubeconfig(tmp_path, pki):
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(pki.ca_pem)
    (tmp_path / "pki" / "client.crt").write_bytes(pki.client_cert_pem)
    (tmp_path / "pki" / "client.key").write_bytes(pki.client_key_pem)
    kc = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": "https://127.0.0.1:6443", "certificate-authority": "pki/ca.crt"},
        user={"client-certificate": "pki/client.crt", "client-key": "pki/client.key"})
    cfg = load_kubeconfig([kc])
    assert cfg.ca_pem == pki.ca_pem and cfg.client_key_pem == pki.client_key_pem
    make_ssl_context(cfg)


def test_kubeconfig_insecure_skip_tls_verify_disables_checks(tmp_path):
    kc = write_kubeconfig(tmp_path / "config",
                          cluster={"server": "https://10.0.0.1", "insecure-skip-tls-verify": True},
                          user={"token": "t"})
    ctx = make_ssl_context(load_kubeconfig([kc]))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_kubeconfig_token_file_is_kept_as_a_path(tmp_path):
    (tmp_path / "tok").write_text("file-token\n")
    kc = write_kubeconfig(tmp_path / "config", cluster={"server": "http://127.0.0.1:8080"},
                          user={"tokenFile": str(tmp_path / "tok")})
    cfg = load_kubeconfig([kc])
    assert cfg.token_file == tmp_path / "tok" and cfg.token is None


@pytest.mark.parametrize(
    ("desc", "user", "cluster", "current", "match"),
    [
        ("an exec plugin is refused by name", {"exec": {"command": "aws"}},
         {"server": "https://x"}, "ctx", "exec"),
        ("basic auth is refused", {"username": "u", "password": "p"},
         {"server": "https://x"}, "ctx", "username"),
        ("a cluster without server is refused", {"token": "t"}, {}, "ctx", "no server"),
        ("a non-URL server is refused", {"token": "t"}, {"server": "10.0.0.1:6443"}, "ctx",
         "http:// or https://"),
        ("no current context is refused", {"token": "t"}, {"server": "https://x"}, None,
         "no current-context"),
        ("a missing CA file is named", {"token": "t"},
         {"server": "https://x", "certificate-authority": "nope.crt"}, "ctx", "nope.crt"),
        ("bad base64 CA data is refused", {"token": "t"},
         {"server": "https://x", "certificate-authority-data": "!!!"}, "ctx", "base64"),
        ("a cert without a key is refused", {"client-certificate-data": _b64(b"x")},
         {"server": "https://x"}, "ctx", "together"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_kubeconfig_errors_name_the_problem(tmp_path, desc, user, cluster, current, match):
    kc = write_kubeconfig(tmp_path / "config", cluster=cluster, user=user, current=current)
    with pytest.raises(ConfigError, match=match):
        load_kubeconfig([kc])


def test_kubeconfig_unknown_context_lists_known_ones(tmp_path):
    kc = write_kubeconfig(tmp_path / "config", cluster={"server": "https://x"},
                          user={"token": "t"})
    with pytest.raises(ConfigError, match=r"'other' not found; known: \['ctx'\]"):
        load_kubeconfig([kc], context="other")


def test_kubeconfig_that_is_not_yaml_is_a_config_error(tmp_path):
    (tmp_path / "config").write_text("clusters: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_kubeconfig([tmp_path / "config"])


def test_corrupt_ca_pem_is_a_config_error_not_an_ssl_error(tmp_path):
    cfg = ClusterConfig(server="https://x", ca_pem=b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                        b"-----END CERTIFICATE-----\n", source="test")
    with pytest.raises(ConfigError, match="not valid PEM"):
        make_ssl_context(cfg)


def test_mismatched_client_key_is_a_config_error(pki):
    other = make_pki()
    cfg = ClusterConfig(server="https://x", client_cert_pem=pki.client_cert_pem,
                        client_key_pem=other.client_key_pem, source="test")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        make_ssl_context(cfg)


def test_kubeconfig_env_list_merges_first_definition_wins(tmp_path, monkeypatch):
    a = write_kubeconfig(tmp_path / "a", cluster={"server": "https://a"}, user={"token": "ta"})
    b = tmp_path / "b"
    b.write_text(yaml.safe_dump({
        "clusters": [{"name": "c2", "cluster": {"server": "https://b"}},
                     {"name": "c1", "cluster": {"server": "https://ignored"}}],
        "users": [{"name": "u2", "user": {"token": "tb"}}],
        "contexts": [{"name": "other", "context": {"cluster": "c2", "user": "u2"}}],
        "current-context": "other",
    }))
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'missing'}:{b}")
    cfg = load_config()
    assert cfg.server == "https://a" and cfg.token == "ta"  # a's current-context wins
    assert load_config(context="other").server == "https://b"


def _serviceaccount(tmp_path: Path, pki, token: str = "sa-token-1") -> Path:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(pki.ca_pem)
    (sa / "namespace").write_text("purelb-system\n")
    return sa


def test_incluster_config_reads_env_and_service_account(tmp_path, pki):
    sa = _serviceaccount(tmp_path, pki)
    cfg = load_incluster_config(environ={"KUBERNETES_SERVICE_HOST": "fd00::1",
                                         "KUBERNETES_SERVICE_PORT": "6443"},
                                serviceaccount_dir=sa)
    assert cfg.server == "https://[fd00::1]:6443"
    assert cfg.namespace == "purelb-system"
    assert cfg.token_file == sa / "token" and cfg.ca_pem == pki.ca_pem


def test_incluster_config_rejects_a_bad_port(tmp_path, pki):
    sa = _serviceaccount(tmp_path, pki)
    with pytest.raises(ConfigError, match="'http' is not a TCP port"):
        load_incluster_config(environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1",
                                       "KUBERNETES_SERVICE_PORT": "http"}, serviceaccount_dir=sa)


def test_load_config_prefers_explicit_then_env_then_incluster(tmp_path, pki):
    sa = _serviceaccount(tmp_path, pki)
    kc = write_kubeconfig(tmp_path / "config", cluster={"server": "https://kc"},
                          user={"token": "t"})
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert load_config(environ=env, serviceaccount_dir=sa).server == "https://10.96.0.1:443"
    env_kc = {**env, "KUBECONFIG": str(kc)}
    assert load_config(environ=env_kc, serviceaccount_dir=sa).server == "https://kc"
    assert load_config(kubeconfig=kc, environ=env, serviceaccount_dir=sa).server == "https://kc"
    with pytest.raises(ConfigError, match="no Kubernetes configuration found"):
        load_config(environ={"HOME": str(tmp_path / "nohome")}, serviceaccount_dir=tmp_path / "x")


async def test_token_source_rereads_a_rotated_token_file(tmp_path, pki, autojump_clock):
    sa = _serviceaccount(tmp_path, pki, token="first")
    cfg = load_incluster_config(environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
                                serviceaccount_dir=sa)
    tokens = TokenSource(cfg, reload_s=60.0)
    assert await tokens.token() == "first"
    (sa / "token").write_text("second")
    await trio.sleep(30)
    assert await tokens.token() == "first", "cached until reload_s passes"
    await trio.sleep(31)
    assert await tokens.token() == "second"
    (sa / "token").write_text("third")
    tokens.invalidate()
    assert await tokens.token() == "third"
    assert tokens.reloads == 3


async def test_token_source_keeps_old_token_while_the_file_is_briefly_missing(tmp_path, pki,
                                                                             autojump_clock):
    sa = _serviceaccount(tmp_path, pki, token="first")
    cfg = load_incluster_config(environ={"KUBERNETES_SERVICE_HOST": "h"}, serviceaccount_dir=sa)
    tokens = TokenSource(cfg, reload_s=1.0)
    assert await tokens.token() == "first"
    (sa / "token").unlink()
    await trio.sleep(2)
    assert await tokens.token() == "first"


def test_cli_options_choose_kubeconfig_context_and_rate_limit(tmp_path):
    import argparse

    from purelb.kube import add_kube_arguments, client_from_args, settings_from_args

    kc = write_kubeconfig(tmp_path / "config", cluster={"server": "http://127.0.0.1:1"},
                          user={"token": "t"})
    parser = argparse.ArgumentParser()
    add_kube_arguments(parser)
    args = parser.parse_args(["--kubeconfig", str(kc), "--kube-qps", "0"])
    assert settings_from_args(args).rate_limit is None
    client = client_from_args(args, role="allocator")
    assert client.config.server == "http://127.0.0.1:1" and client.role == "allocator"
    args = parser.parse_args(["--kubeconfig", str(kc), "--kube-qps", "5", "--kube-burst", "7"])
    assert settings_from_args(args).rate_limit.burst == 7
