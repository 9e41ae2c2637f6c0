"""Wiring: one :class:`ApiServer` = store + registry + REST surface + listener.

``serve_apiserver(config, task_status=...)`` is the Trio service function: it opens the
store, loads CRD files, binds the socket (TLS when configured) and reports the bound port
through ``task_status.started`` so ``await nursery.start(serve_apiserver, cfg)`` returns a
ready server.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio
import yaml

from purelb.errors import ConfigError

from ._api import ApiSettings, AuditKey, AuditRequest, KubeApi, error_response
from ._crd import validate_crd
from ._errors import StatusError, bad_request, too_large
from ._faults import FaultInjector
from ._http import serve_connection
from ._objects import Objects, WriteOptions
from ._resources import CRD_STORAGE_KEY, SERVICES_KEY, Registry
from ._services import DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDRS, ServiceAllocator
from ._store import DEFAULT_HISTORY_LIMIT, Backend, MemoryBackend, Store

LOG = logging.getLogger(__name__)

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
"""The namespaces a fresh real cluster has."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiServerConfig:
    """Everything that decides how one API server instance behaves."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port (reported through task_status)."""
    db_path: Path | None = None
    """SQLite file; None keeps everything in memory."""
    crd_paths: tuple[Path, ...] = ()
    """YAML files (or directories of them) with CRDs to install at startup."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    """Bearer token -> user name; empty means no authentication (loopback only)."""
    api: ApiSettings = field(default_factory=ApiSettings)
    history_limit: int = DEFAULT_HISTORY_LIMIT
    service_cidrs: tuple[str, ...] = DEFAULT_SERVICE_CIDRS
    node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range 0-65535", path="port",
                              value=self.port)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be given together", path="tls_cert",
                              value=self.tls_cert)
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            raise ConfigError(f"host {self.host!r} must be an IP address", path="host",
                              value=self.host) from None
        if not loopback and (self.tls_cert is None or not self.tokens):
            raise ConfigError(
                f"listening on {self.host} (not loopback) needs HTTPS and bearer tokens: "
                "set tls_cert/tls_key and tokens (the CLI generates them)",
                path="host", value=self.host)


def _load_crd_docs(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml", ".json"))
        else:
            files.append(p)
    for f in files:
        try:
            loaded = list(yaml.safe_load_all(f.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read CRD file {f}: {exc}", path="crd_paths",
                              value=str(f)) from None
        for d in loaded:
            if d is None:
                continue
            if not isinstance(d, dict) or d.get("kind") != "CustomResourceDefinition":
                raise ConfigError(f"{f} holds a {d.get('kind') if isinstance(d, dict) else d!r},"
                                  " not a CustomResourceDefinition", path="crd_paths",
                                  value=str(f))
            docs.append(d)
    return docs


class ApiServer:
    """One API server's parts; the listener is run by :func:`serve_apiserver`."""

    def __init__(
        self,
        config: ApiServerConfig,
        *,
        backend: Backend | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        if backend is None:
            if config.db_path is not None:
                from ._sqlite import SqliteBackend

                backend = SqliteBackend(config.db_path)
            else:
                backend = MemoryBackend()
        self.store = Store(backend, history_limit=config.history_limit)
        self.registry = Registry.with_builtins()
        self.services = ServiceAllocator(cidrs=config.service_cidrs,
                                         node_port_range=config.node_port_range)
        self.faults = FaultInjector()
        self.objects = Objects(self.store, self.registry, self.services, clock=self.clock)
        self.api = KubeApi(store=self.store, registry=self.registry, objects=self.objects,
                           faults=self.faults, settings=config.api, tokens=config.tokens,
                           clock=self.clock)
        self.port: int | None = None
        self._restore()

    def __repr__(self) -> str:
        return f"ApiServer({self.config.host}:{self.port}, rv={self.store.rv})"

    def _restore(self) -> None:
        """Rebuild derived state (CRD resources, allocations) from stored objects."""
        for crd in self.store.list(CRD_STORAGE_KEY):
            try:
                for d in validate_crd(crd):
                    self.registry.add(d)
            except StatusError as exc:
                LOG.error("event=stored_crd_invalid name=%s reason=%s",
                          crd["metadata"]["name"], exc.message)
        self.services.rebuild(self.store.list(SERVICES_KEY))

    def audit_records(self, user: str | None = None) -> dict[str, set[AuditKey]] | set[AuditKey]:
        """Per user, the (verb, group, resource, subresource, namespace) requests served."""
        return self.api.audit_records(user)

    def audit_requests(self, user: str) -> set[AuditRequest]:
        """One user's requests served, with object names (for ``resourceNames`` checks)."""
        return self.api.audit_requests(user)

    def install(self, docs: list[dict[str, Any]]) -> None:
        """Create or replace objects (startup CRDs); errors name the object."""
        opts = WriteOptions(field_validation="Strict")
        for d in docs:
            rdef = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            assert rdef is not None
            name = d.get("metadata", {}).get("name", "")
            try:
                if self.store.get(CRD_STORAGE_KEY, "", name) is None:
                    self.objects.create(rdef, "", d, opts)
                else:
                    current = self.store.get(CRD_STORAGE_KEY, "", name)
                    assert current is not None
                    body = dict(d)
                    body["metadata"] = {**d.get("metadata", {}),
                                        "resourceVersion": current["metadata"]["resourceVersion"]}
                    self.objects.update(rdef, "", name, body, opts)
            except StatusError as exc:
                raise ConfigError(f"CRD {name!r} rejected: {exc.message}", path="crd_paths",
                                  value=name) from None

    def bootstrap(self) -> None:
        self.objects.bootstrap_namespaces(BOOTSTRAP_NAMESPACES)
        self.install(_load_crd_docs(self.config.crd_paths))

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None or self.config.tls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.config.tls_cert), str(self.config.tls_key))
        ctx.set_alpn_protocols(["http/1.1"])  # kubectl offers h2; we speak HTTP/1.1 only
        return ctx

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        limit = self.config.api.max_body_bytes
        try:
            await serve_connection(
                stream, self.api, max_body_bytes=limit,
                too_large=lambda: error_response(too_large(limit)),
                bad_request=lambda m: error_response(bad_request(m)),
            )
        except trio.BrokenResourceError:
            return
        except Exception:  # one broken connection must never stop the server
            LOG.exception("event=connection_failed")

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Bootstrap, listen, and serve until cancelled; reports the bound port."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.store.run_committer)
            self.bootstrap()
            await self.store.flush()
            ctx = self.ssl_context()
            if ctx is not None:
                listeners = await nursery.start(partial(
                    trio.serve_ssl_over_tcp, self.handle_connection, self.config.port, ctx,
                    host=self.config.host, https_compatible=True))
            else:
                listeners = await nursery.start(partial(
                    trio.serve_tcp, self.handle_connection, self.config.port,
                    host=self.config.host))
            sock = listeners[0].transport_listener.socket if ctx else listeners[0].socket
            self.port = sock.getsockname()[1]
            LOG.info("event=apiserver_listening host=%s port=%d tls=%s storage=%s",
                     self.config.host, self.port, ctx is not None,
                     "sqlite" if self.config.db_path else "memory")
            task_status.started(self.port)

    def close(self) -> None:
        self.store.close()


async def serve_apiserver(
    config: ApiServerConfig,
    *,
    server: ApiServer | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an API server until cancelled; ``nursery.start`` returns the bound port."""
    srv = server or ApiServer(config)
    try:
        await srv.serve(task_status=task_status)
    finally:
        srv.close()


