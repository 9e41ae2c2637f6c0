"""Embedded edge mode: the API server, the allocator and this host's agent in one Trio process.

An edge gateway has no cluster, but wants the same thing a cluster gets: addresses from
ServiceGroup pools, attracted to this host. So the same parts run here, wired as in a
cluster, and talk over real HTTP on loopback with the same client::

    EmbeddedGateway.run (one nursery)
      apiserver   purelb.apiserver (SQLite under the state directory)   <- kubectl, status
      bootstrap   kubeconfig written, start-up manifests server-side applied (idempotent)
      allocator   AllocatorDaemon (no leader election: one writer by construction)
      agent       gossip off (default): embedded_agent.HostAgent, this host the only
                  candidate (netlink: kube-lb0 + the NIC, GARP/NA; --no-netlink: the plan
                  only, no interface touched); gossip on (--gossip-bind/--gossip-peer):
                  the node agent daemon of ``purelb agent``, electing among gateways

State directory (``0700``): ``purelb.db`` (SQLite, WAL, synchronous=FULL: an acknowledged
write survives ``kill -9``), ``kubeconfig`` (0600), and off loopback the generated CA,
server certificate and bearer token (0600, reused on restart so old kubeconfigs work).
``endpoints.json`` records the metrics URLs of the in-process daemons for ``purelb status``.

Listening off loopback is refused unless it is HTTPS with a bearer token; the CLI
generates both on first start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

import purelb
from purelb.agent import AgentSettings
from purelb.apiserver import ApiServer, ApiServerConfig, serve_apiserver
from purelb.apiserver._kubeconfig import write_kubeconfig
from purelb.apiserver._tls import load_or_make_self_signed, load_or_make_token
from purelb.controllers.allocator import AllocatorDaemon, DaemonSettings
from purelb.controllers.embedded_agent import PLAN_FILE, HostAgent, HostAgentSettings
from purelb.controllers.embedded_manifests import (
    Manifest,
    apply_manifests,
    load_manifests,
    plan_apply,
)
from purelb.errors import ConfigError
from purelb.kube import (
    DEFAULT_CLIENT_SETTINGS,
    KubeClient,
    RateLimitSettings,
    load_kubeconfig,
)

LOGGER = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path("/var/lib/purelb")
DEFAULT_LISTEN = ("127.0.0.1", 6443)
"""Loopback by default: kubectl on the gateway itself needs nothing else."""
DEFAULT_NAMESPACE = "purelb-system"
DB_FILE = "purelb.db"
KUBECONFIG_FILE = "kubeconfig"
TOKEN_FILE = "token"
ENDPOINTS_FILE = "endpoints.json"
STATE_DIR_MODE = 0o700
"""The directory holds the token and the CA key: owner only."""
IN_PROCESS_CLIENT = dataclasses.replace(
    DEFAULT_CLIENT_SETTINGS, rate_limit=RateLimitSettings(qps=2000.0, burst=2000))
"""The client rate limit protects a shared kube-apiserver (50 qps there). Here the server
is ours, in this process, and has no other heavy client; at 50 qps the allocator (about
three requests per Service) would hand out only ~16 addresses a second after a restart."""


def default_crd_dir() -> Path:
    """The CRDs shipped in the package (wheel or image install: ``purelb/crds``, copied at
    build time), else deploy/crds of the source tree this package runs from (editable)."""
    package_dir = Path(purelb.__file__).resolve().parent
    shipped = package_dir / "crds"
    return shipped if shipped.is_dir() else package_dir.parent / "deploy" / "crds"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedSettings:
    """Everything ``purelb embedded`` is told (see ``--help``)."""

    state_dir: Path = DEFAULT_STATE_DIR
    host: str = DEFAULT_LISTEN[0]
    port: int = DEFAULT_LISTEN[1]
    """0 picks a free port (tests)."""
    config_paths: tuple[Path, ...] = ()
    """Start-up manifests: files or directories of ServiceGroups, LBNodeAgents, Services."""
    crd_paths: tuple[Path, ...] = field(default_factory=lambda: (default_crd_dir(),))
    netlink: bool = True
    """False: plan only, touch no interface (the non-root mode)."""
    netns: str | None = None
    """Network namespace whose interfaces the agent manages (None: this process's own)."""
    gossip_bind: str | None = None
    """``HOST[:PORT]`` of this gateway's gossip member. Gossip is off unless this or
    ``gossip_peers`` is set: a lone gateway needs no election."""
    gossip_peers: tuple[str, ...] = ()
    """Other gateways of a multi-gateway site (``HOST[:PORT]``): turns gossip on, and the
    node agent daemon (``purelb agent``'s) runs instead of the single-gateway agent."""
    node_name: str = field(default_factory=socket.gethostname)
    namespace: str = DEFAULT_NAMESPACE
    metrics_host: str = "127.0.0.1"
    """The daemons' /metrics /healthz /readyz; loopback, since the gateway is the client."""
    token: str | None = None
    """Bearer token to require; generated (and kept in the state directory) off loopback."""
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ConfigError(f"--listen host {self.host!r} must be an IP address",
                              path="listen", value=self.host) from None
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--listen port {self.port} is out of range 0-65535",
                              path="listen", value=self.port)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together", path="tls_cert",
                              value=self.tls_cert)
        if self.gossip and not self.netlink:
            raise ConfigError("--no-netlink plans for a single gateway; gossip (--gossip-bind/"
                              "--gossip-peer) needs the node agent, which needs netlink",
                              path="gossip-peer", value=list(self.gossip_peers))
        if self.gossip_peers and not self.gossip_bind:
            raise ConfigError("--gossip-peer needs --gossip-bind HOST[:PORT]: the address the "
                              "peers reach this gateway at", path="gossip-bind", value=None)
        for p in self.crd_paths:
            if not p.exists():
                raise ConfigError(f"CRD path {p} does not exist: pass --crd DIR (deploy/crds "
                                  "of the purelb source tree)", path="crd", value=str(p))

    @property
    def gossip(self) -> bool:
        return bool(self.gossip_bind or self.gossip_peers)

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / KUBECONFIG_FILE


@dataclass(frozen=True, slots=True)
class EmbeddedInfo:
    """What a started gateway reports (``nursery.start`` returns it)."""

    url: str
    kubeconfig: Path
    port: int
    allocator_metrics: str
    agent: str
    """``netlink`` (the node agent runs) or ``plan-only``."""


def prepare_state_dir(path: Path) -> Path:
    """Create the state directory owner-only; refuse one others can write."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)
        mode = path.stat().st_mode & 0o777
        writable = os.access(path, os.W_OK)
    except PermissionError:
        writable = False
        mode = 0
    if not writable:
        raise ConfigError(f"state directory {path} cannot be created or written by this user: "
                          "run as root or pass --state-dir DIR", path="state-dir",
                          value=str(path))
    if mode & 0o022:
        raise ConfigError(f"state directory {path} is writable by others (mode {mode:o}); "
                          "chmod 700 it", path="state-dir", value=str(path))
    return path


@dataclass(frozen=True, slots=True)
class ServerSetup:
    config: ApiServerConfig
    client_url_host: str
    token: str | None
    ca_pem: bytes | None


def server_setup(s: EmbeddedSettings) -> ServerSetup:
    """The API server config; TLS and a token (generated if needed) off loopback."""
    tls = not s.loopback or s.tls_cert is not None
    cert, key, ca_pem, token = s.tls_cert, s.tls_key, None, s.token
    if tls and cert is None:
        cert, key, ca_pem = load_or_make_self_signed(s.state_dir, s.host)
    if tls and token is None:
        token = load_or_make_token(s.state_dir / TOKEN_FILE)
    # The in-process clients (and the kubeconfig) reach a wildcard listener on loopback;
    # the generated certificate names 127.0.0.1 too.
    unspecified = ipaddress.ip_address(s.host).is_unspecified
    client_host = ("127.0.0.1" if ipaddress.ip_address(s.host).version == 4 else "::1") \
        if unspecified else s.host
    cfg = ApiServerConfig(host=s.host, port=s.port, db_path=s.state_dir / DB_FILE,
                          crd_paths=s.crd_paths, tls_cert=cert, tls_key=key,
                          tokens={token: "admin"} if token else {})
    return ServerSetup(cfg, client_host, token, ca_pem)


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class EmbeddedGateway:
    """The wiring (see the module docstring). ``info = await nursery.start(gw.run)``."""

    def __init__(self, settings: EmbeddedSettings) -> None:
        self.settings = settings
        self.manifests: list[Manifest] = []
        self.allocator: AllocatorDaemon | None = None
        self.agent: HostAgent | None = None
        self.agent_daemon: object | None = None
        self.server: ApiServer | None = None
        self.info: EmbeddedInfo | None = None

    def __repr__(self) -> str:
        return f"EmbeddedGateway({self.settings.state_dir}, info={self.info})"

    async def run(self, *, task_status: trio.TaskStatus[EmbeddedInfo] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        s = self.settings
        # Parse every manifest before anything starts: a typo fails the start, not half of it.
        self.manifests = plan_apply(load_manifests(s.config_paths, install_namespace=s.namespace),
                                    install_namespace=s.namespace)
        prepare_state_dir(s.state_dir)
        setup = server_setup(s)
        self.server = ApiServer(setup.config)
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(partial(serve_apiserver, setup.config,
                                                   server=self.server))
            except* OSError as group:
                exc: BaseException = group
                while isinstance(exc, BaseExceptionGroup):
                    exc = exc.exceptions[0]
                raise ConfigError(f"cannot listen on {s.host}:{s.port}: "
                                  f"{getattr(exc, 'strerror', None) or exc}; pick another "
                                  "--listen", path="listen", value=f"{s.host}:{s.port}"
                                  ) from None
            url = _url("https" if setup.config.tls_cert else "http", setup.client_url_host, port)
            write_kubeconfig(s.kubeconfig, server=url, token=setup.token, ca_pem=setup.ca_pem)
            LOGGER.info("event=embedded_api url=%s kubeconfig=%s", url, s.kubeconfig)
            client = KubeClient(load_kubeconfig([s.kubeconfig]), role="embedded",
                                settings=IN_PROCESS_CLIENT)
            info = await nursery.start(self._components, client, url, port)
            LOGGER.info("event=embedded_ready url=%s agent=%s", info.url, info.agent)
            task_status.started(info)

    async def _components(self, client: KubeClient, url: str, port: int, *,
                          task_status: trio.TaskStatus[EmbeddedInfo] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        s = self.settings
        async with client, trio.open_nursery() as nursery:
            report = await apply_manifests(client, self.manifests)
            for label in report.created:
                LOGGER.info("event=manifest_created object=%r", label)
            for label in report.changed:
                LOGGER.info("event=manifest_changed object=%r", label)
            self.allocator = AllocatorDaemon(client, DaemonSettings(
                namespace=s.namespace, identity=f"{s.node_name}-embedded",
                metrics_host=s.metrics_host, metrics_port=0, leader_elect=False))
            await nursery.start(self.allocator.run)
            alloc_metrics = _url("http", s.metrics_host, self.allocator.metrics_port)
            endpoints = {"allocator": alloc_metrics, "gossip": "off"}
            if s.gossip:
                # the plan file belongs to the single-gateway agent; never show a stale one
                (s.state_dir / PLAN_FILE).unlink(missing_ok=True)
                agent_kind = "gossip"
                endpoints["gossip"] = "on"
                endpoints["agent"] = await self._start_agent_daemon(client, nursery)
            else:
                agent_kind = "netlink" if s.netlink else "plan-only"
                self.agent = HostAgent(client, HostAgentSettings(
                    node_name=s.node_name, namespace=s.namespace, state_dir=s.state_dir,
                    netlink=s.netlink, netns=s.netns,
                    # on kernels without IFA_PROTO the ownership ledger lives with our state
                    agent=AgentSettings(state_dir=str(s.state_dir))))
                await nursery.start(self.agent.run)
            _write_json(s.state_dir / ENDPOINTS_FILE, endpoints)
            self.info = EmbeddedInfo(url, s.kubeconfig, port, alloc_metrics, agent_kind)
            task_status.started(self.info)



    async def _start_agent_daemon(self, client: KubeClient, nursery: trio.Nursery) -> str:
        """The cluster's node agent (gossip, election among gateways); its metrics URL.

        Its gossip key is the Secret ``purelb-gossip`` in the install namespace: give the
        same Secret manifest to every gateway of the site with ``--config``.
        """
        from purelb.controllers.agent import (
            DEFAULT_GOSSIP_PORT,
            AgentDaemon,
            AgentDaemonSettings,
        )
        from purelb.election import parse_address

        s = self.settings
        assert s.gossip_bind is not None  # checked in EmbeddedSettings
        daemon = AgentDaemon(client, AgentDaemonSettings(
            node_name=s.node_name, namespace=s.namespace, metrics_host=s.metrics_host,
            metrics_port=0, netns=s.netns,
            gossip_bind=parse_address(s.gossip_bind, default_port=DEFAULT_GOSSIP_PORT),
            gossip_seeds=tuple(parse_address(p, default_port=DEFAULT_GOSSIP_PORT)
                               for p in s.gossip_peers)))
        await nursery.start(daemon.run)
        self.agent_daemon = daemon
        return _url("http", s.metrics_host, daemon.metrics_port)


def _write_json(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
