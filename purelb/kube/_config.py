"""Where the API server is and how to authenticate: kubeconfig or in-cluster.

:func:`load_config` picks the source the way kubectl and client-go do:

1. an explicit ``--kubeconfig`` path,
2. the ``KUBECONFIG`` variable (a ``:``-separated list; the first file that defines a
   name wins, as in kubectl),
3. in-cluster: ``KUBERNETES_SERVICE_HOST``/``PORT`` plus the service-account token,
4. ``~/.kube/config``.

The result is one immutable :class:`ClusterConfig` with the PEM material loaded, so a
missing or corrupt file fails at startup with the file name, not at the first request.
The in-cluster token is the exception: it is a file that kubelet rotates, so the config
keeps its path and :class:`TokenSource` re-reads it.

Unsupported kubeconfig features (``exec`` and ``auth-provider`` plugins, basic auth)
raise :class:`~purelb.errors.ConfigError` naming the user entry.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from base64 import b64decode
from binascii import Error as B64Error
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import yaml

from purelb.errors import ConfigError

#: Where kubelet mounts the service-account token, CA and namespace.
SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: Default kubeconfig location, relative to the home directory.
DEFAULT_KUBECONFIG = Path(".kube") / "config"
#: Namespace used when the context names none (kubectl's default).
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Resolved connection settings. Secrets are hidden from ``repr``."""

    server: str
    """Base URL, e.g. ``https://10.96.0.1:443``."""
    namespace: str = DEFAULT_NAMESPACE
    """Default namespace of the context (or of the pod, in-cluster)."""
    ca_pem: bytes | None = field(default=None, repr=False)
    """Trusted CA certificates (PEM). ``None`` uses the system store."""
    insecure_skip_tls_verify: bool = False
    """Skip server certificate checks (kubeconfig ``insecure-skip-tls-verify``)."""
    tls_server_name: str | None = None
    """Name to check in the server certificate instead of the URL host."""
    token: str | None = field(default=None, repr=False)
    """Static bearer token."""
    token_file: Path | None = None
    """Bearer token file re-read when it rotates (in-cluster, kubeconfig ``tokenFile``)."""
    client_cert_pem: bytes | None = field(default=None, repr=False)
    """Client certificate chain (PEM) for mutual TLS."""
    client_key_pem: bytes | None = field(default=None, repr=False)
    """Private key (PEM) of the client certificate."""
    source: str = ""
    """Human-readable origin, e.g. ``kubeconfig /x/config context kind``, for logs."""

    def __post_init__(self) -> None:
        if not self.server.startswith(("https://", "http://")):
            raise ConfigError(
                f"server {self.server!r} ({self.source}) must be an http:// or https:// URL",
                path="server", value=self.server,
            )
        if (self.client_cert_pem is None) != (self.client_key_pem is None):
            raise ConfigError(
                f"client certificate and key must be given together ({self.source})",
                path="client-certificate", value=None,
            )


# ---------------------------------------------------------------------------- loading


def load_config(
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
    serviceaccount_dir: Path = SERVICEACCOUNT_DIR,
) -> ClusterConfig:
    """Resolve the cluster config from the first source that exists (see module doc)."""
    env = os.environ if environ is None else environ
    if kubeconfig is not None:
        return load_kubeconfig([Path(kubeconfig)], context=context)
    if env.get("KUBECONFIG"):
        paths = [Path(p) for p in env["KUBECONFIG"].split(os.pathsep) if p]
        return load_kubeconfig(paths, context=context)
    if env.get("KUBERNETES_SERVICE_HOST") and (serviceaccount_dir / "token").exists():
        return load_incluster_config(environ=env, serviceaccount_dir=serviceaccount_dir)
    home = env.get("HOME")
    if home and (Path(home) / DEFAULT_KUBECONFIG).exists():
        return load_kubeconfig([Path(home) / DEFAULT_KUBECONFIG], context=context)
    raise ConfigError(
        "no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, run in a pod "
        "with a service account, or create ~/.kube/config",
        path="kubeconfig", value=None,
    )


def load_incluster_config(
    *, environ: Mapping[str, str] | None = None, serviceaccount_dir: Path = SERVICEACCOUNT_DIR
) -> ClusterConfig:
    """Config from the pod environment and the mounted service-account files."""
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ConfigError("KUBERNETES_SERVICE_HOST is not set: not running in a pod?",
                          path="KUBERNETES_SERVICE_HOST", value=host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"KUBERNETES_SERVICE_PORT {port!r} is not a TCP port",
                          path="KUBERNETES_SERVICE_PORT", value=port)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    token_file = serviceaccount_dir / "token"
    _read_text(token_file, "service-account token")  # fail now if unreadable
    ca_path = serviceaccount_dir / "ca.crt"
    ca_pem = _read_bytes(ca_path, "service-account CA") if ca_path.exists() else None
    ns_path = serviceaccount_dir / "namespace"
    namespace = ns_path.read_text().strip() if ns_path.exists() else DEFAULT_NAMESPACE
    return ClusterConfig(
        server=f"https://{host}:{port}",
        namespace=namespace or DEFAULT_NAMESPACE,
        ca_pem=ca_pem,
        token_file=token_file,
        source=f"in-cluster ({serviceaccount_dir})",
    )


def load_kubeconfig(paths: list[Path], *, context: str | None = None) -> ClusterConfig:
    """Config from one or more kubeconfig files (first definition of a name wins)."""
    if not paths:
        raise ConfigError("KUBECONFIG lists no files", path="KUBECONFIG", value="")
    merged: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {
        "clusters": {}, "users": {}, "contexts": {}
    }
    current: str | None = None
    loaded_any = False
    for path in paths:
        if not path.exists():
            if len(paths) == 1:
                raise ConfigError(f"kubeconfig {path} does not exist", path="kubeconfig",
                                  value=str(path))
            continue  # kubectl skips missing files in a KUBECONFIG list
        doc = _load_yaml(path)
        loaded_any = True
        current = current or doc.get("current-context") or None
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise ConfigError(f"kubeconfig {path}: {section} must be a list",
                                  path=section, value=entries)
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise ConfigError(f"kubeconfig {path}: every {section} entry needs a name",
                                      path=section, value=entry)
                body = entry.get(inner) or {}
                if not isinstance(body, dict):
                    raise ConfigError(f"kubeconfig {path}: {section} {entry['name']!r} has no "
                                      f"{inner} mapping", path=f"{section}.{entry['name']}",
                                      value=body)
                merged[section].setdefault(entry["name"], (body, path))
    if not loaded_any:
        raise ConfigError(f"none of the kubeconfig files exist: {[str(p) for p in paths]}",
                          path="KUBECONFIG", value=[str(p) for p in paths])
    ctx_name = context or current
    if not ctx_name:
        raise ConfigError(f"kubeconfig {paths[0]} has no current-context; pass a context",
                          path="current-context", value=None)
    if ctx_name not in merged["contexts"]:
        raise ConfigError(
            f"kubeconfig context {ctx_name!r} not found; known: {sorted(merged['contexts'])}",
            path="contexts", value=ctx_name,
        )
    ctx, ctx_path = merged["contexts"][ctx_name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in merged["clusters"]:
        raise ConfigError(f"context {ctx_name!r} names cluster {cluster_name!r}, which is not "
                          f"defined in {ctx_path}", path=f"contexts.{ctx_name}.cluster",
                          value=cluster_name)
    cluster, cluster_path = merged["clusters"][cluster_name]
    user: dict[str, Any] = {}
    user_path = ctx_path
    if user_name:
        if user_name not in merged["users"]:
            raise ConfigError(f"context {ctx_name!r} names user {user_name!r}, which is not "
                              f"defined", path=f"contexts.{ctx_name}.user", value=user_name)
        user, user_path = merged["users"][user_name]
    source = f"kubeconfig {ctx_path} context {ctx_name}"
    return ClusterConfig(
        server=_server(cluster, cluster_name, cluster_path),
        namespace=str(ctx.get("namespace") or DEFAULT_NAMESPACE),
        ca_pem=_pem(cluster, "certificate-authority", cluster_path, f"cluster {cluster_name!r}"),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
        token=_token(user, user_name),
        token_file=_token_file(user, user_path),
        client_cert_pem=_pem(user, "client-certificate", user_path, f"user {user_name!r}"),
        client_key_pem=_pem(user, "client-key", user_path, f"user {user_name!r}"),
        source=source,
    )


def _load_yaml(path: Path) -> dict[str, Any]:
    text = _read_text(path, "kubeconfig")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {path} is not valid YAML: {exc}", path="kubeconfig",
                          value=str(path)) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} must be a mapping, got {type(doc).__name__}",
                          path="kubeconfig", value=str(path))
    return doc


def _server(cluster: dict[str, Any], name: str, path: Path) -> str:
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise ConfigError(f"cluster {name!r} in {path} has no server URL",
                          path=f"clusters.{name}.server", value=server)
    return server.rstrip("/")


def _token(user: dict[str, Any], name: str | None) -> str | None:
    for unsupported in ("exec", "auth-provider", "username", "password"):
        if user.get(unsupported):
            raise ConfigError(
                f"user {name!r} uses {unsupported!r}, which purelb does not support; use a "
                "bearer token, a token file or a client certificate",
                path=f"users.{name}.{unsupported}", value=unsupported,
            )
    token = user.get("token")
    return str(token).strip() if token else None


def _token_file(user: dict[str, Any], base: Path) -> Path | None:
    raw = user.get("tokenFile")
    if not raw:
        return None
    path = _resolve(raw, base)
    _read_text(path, "tokenFile")
    return path


def _pem(entry: dict[str, Any], key: str, base: Path, owner: str) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        try:
            return b64decode(str(data), validate=True)
        except (B64Error, ValueError) as exc:
            raise ConfigError(f"{owner}: {key}-data is not valid base64", path=f"{key}-data",
                              value="<redacted>") from exc
    ref = entry.get(key)
    if ref:
        return _read_bytes(_resolve(ref, base), f"{owner} {key}")
    return None


def _resolve(raw: object, base: Path) -> Path:
    path = Path(str(raw)).expanduser()
    return path if path.is_absolute() else base.parent / path


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}", path=what,
                          value=str(path)) from exc


def _read_text(path: Path, what: str) -> str:
    return _read_bytes(path, what).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------- TLS


def make_ssl_context(config: ClusterConfig) -> ssl.SSLContext:
    """Build the TLS context: trusted CAs, optional client certificate.

    Python's ``ssl`` only loads client keys from files, so PEM data is written to a
    private temporary directory (mode 0700) and removed before this returns.
    """
    ctx = ssl.create_default_context()
    if config.ca_pem is not None:
        ctx = ssl.create_default_context(cadata=_ascii_pem(config.ca_pem, "CA", config))
    if config.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.client_cert_pem is not None and config.client_key_pem is not None:
        with tempfile.TemporaryDirectory(prefix="purelb-tls-") as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(config.client_cert_pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(config.client_key_pem)
            try:
                ctx.load_cert_chain(cert, key)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"client certificate/key from {config.source} cannot be loaded: {exc.reason}",
                    path="client-certificate", value="<redacted>",
                ) from exc
    return ctx


def _ascii_pem(pem: bytes, what: str, config: ClusterConfig) -> str:
    try:
        text = pem.decode("ascii")
        ssl.create_default_context(cadata=text)
    except (UnicodeDecodeError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{what} certificate from {config.source} is not valid PEM",
                          path="certificate-authority", value="<redacted>") from exc
    return text


# ---------------------------------------------------------------------------- tokens


class TokenSource:
    """The bearer token for each request; re-reads a token file when it may have rotated.

    kubelet rewrites projected service-account tokens before they expire (after 80% of
    their life, at least hourly), so the file is re-read every ``reload_s`` and at once
    after a 401 (:meth:`invalidate`).
    """

    def __init__(self, config: ClusterConfig, *, reload_s: float) -> None:
        self._static = config.token
        self._file = config.token_file
        self._reload_s = reload_s
        self._cached: str | None = None
        self._loaded_at = -float("inf")
        self.reloads = 0
        """How many times the token file was read."""

    def __repr__(self) -> str:
        source = f"file {self._file}" if self._file else ("static" if self._static else "none")
        return f"TokenSource({source}, reloads={self.reloads})"

    @property
    def rotates(self) -> bool:
        """Whether :meth:`invalidate` can yield a different token (a file is used)."""
        return self._file is not None

    async def token(self) -> str | None:
        if self._file is None:
            return self._static
        now = trio.current_time()
        if self._cached is None or now - self._loaded_at >= self._reload_s:
            try:
                text = await trio.Path(self._file).read_text()
            except OSError as exc:
                if self._cached is not None:
                    return self._cached  # keep the old token while kubelet swaps the file
                raise ConfigError(f"cannot read token file {self._file}: {exc.strerror}",
                                  path="tokenFile", value=str(self._file)) from exc
            self._cached = text.strip()
            self._loaded_at = now
            self.reloads += 1
        return self._cached

    def invalidate(self) -> None:
        """Force the next :meth:`token` call to re-read the file."""
        self._loaded_at = -float("inf")
