"""The node agent daemon (LBNodeAgent): caches + gossip + netlink, as one Trio nursery.

Tasks (children of one nursery, each under :func:`supervise`)::

    metrics        /metrics /healthz /readyz (ready = caches synced and netlink open)
    services       Reflector(Services, all namespaces)          -> poke
    endpointslices Reflector(EndpointSlices, all, by service)   -> poke
    servicegroups  Reflector(ServiceGroups, install namespace)  -> poke
    lbnodeagents   Reflector(LBNodeAgents, install namespace)   -> poke
    secrets        Reflector(the gossip key Secret only)         -> poke (keys rotate live)
    core           owns the NetlinkWriter, the Announcer and the gossip Member:
                     membership events -> poke
                     loop: wait for a poke or ``resync_s`` -> discover interfaces ->
                           build plan input -> plan() -> writer.reconcile() ->
                           GARP/NA for newly won local addresses -> hand the outcome
                           to the reporter
    reporter       annotations (merge patch, only on change) and Events, off the
                   netlink path so a slow API never delays an address

One task owns netlink, so no two reconciles interleave. Everything it needs from the API is
read from the caches; the plan (``purelb.agent.plan``) is pure.

Start-up: the member joins with ``ready=False`` and the node claims no local address until it
has seen another member (or ``join_wait_s`` passed): alone in its view it would win every
address. The first reconcile removes whatever a previous run left (its own marked addresses).

Shutdown (SIGTERM -> cancel): the core withdraws every address it owns inside a shielded scope
bounded by ``shutdown_grace_s`` while the member sends its leave notice (also shielded), so
the next winner takes over at once instead of after failure detection.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from purelb.agent import AddressKind, AgentSettings
from purelb.agent.garp import Announcer
from purelb.agent.interfaces import discover, servable_networks
from purelb.agent.netlink import NetlinkWriter, ReconcileResult
from purelb.agent.plan import (
    ANNOUNCING_KEYS,
    Plan,
    PlanInput,
    ServiceKey,
    VirtualInterface,
    plan,
)
from purelb.agent.plan import (
    NodeName as PlanNode,
)
from purelb.agent.records import IPAddress, IPNetwork, LinkInfo
from purelb.agent.settings import DEFAULT_AGENT_SETTINGS
from purelb.controllers.agent_inputs import Inputs, build_inputs, parse_groups
from purelb.controllers.agent_metrics import AgentMetrics
from purelb.controllers.supervisor import Backoff, supervise
from purelb.election import (
    Address,
    GossipTimings,
    Keyring,
    Member,
    MemberConfig,
    MemberMeta,
    lan,
    parse_secret_data,
    serve_member,
)
from purelb.errors import ConfigError
from purelb.kube import (
    ENDPOINT_SLICES,
    ENDPOINTSLICE_BY_SERVICE,
    LB_NODE_AGENTS,
    PODS,
    SECRETS,
    SERVICE_GROUPS,
    SERVICES,
    Change,
    EventRecorder,
    EventSettings,
    EventType,
    KubeApiError,
    KubeClient,
    PatchType,
    Reflector,
    ReflectorSettings,
    Resource,
)
from purelb.model import LBNodeAgentConfig, choose_config
from purelb.obs import Health, serve_health_and_metrics

LOGGER = logging.getLogger(__name__)

JSON = dict[str, Any]
DEFAULT_NAMESPACE = "purelb-system"
DEFAULT_METRICS_PORT = 7472
DEFAULT_GOSSIP_PORT = 7934
"""PureLB's memberlist port."""
DEFAULT_KEY_SECRET = "purelb-gossip"
DEFAULT_CLUSTER = "purelb"
SYNCED, NETLINK = "synced", "netlink"
EVENT_SOURCE = "purelb.io/lbnodeagent"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentDaemonSettings:
    """Everything the agent daemon is told; see ``purelb agent --help``."""

    node_name: str
    namespace: str = DEFAULT_NAMESPACE
    metrics_host: str = "0.0.0.0"
    """Bind address of /metrics /healthz /readyz."""
    metrics_port: int = DEFAULT_METRICS_PORT
    netns: str | None = None
    """Network namespace whose interfaces the agent manages (None = its own)."""
    gossip_bind: Address
    gossip_advertise: Address | None = None
    gossip_seeds: tuple[Address, ...] = ()
    cluster: str = DEFAULT_CLUSTER
    """Bound into every gossip datagram: two clusters on one LAN never mix."""
    key_secret: str = DEFAULT_KEY_SECRET
    """Secret (install namespace) whose data is the gossip keyring."""
    gossip_timings: GossipTimings = field(default_factory=lan)
    agent: AgentSettings = DEFAULT_AGENT_SETTINGS
    """Base I/O settings; the LBNodeAgent object overrides its fields."""
    resync_s: float = 10.0
    """Reconcile at least this often without any change: heals a missed event or an
    address someone removed, and refreshes finite lifetimes (must stay below half of
    ``agent.local_valid_lft_s``, checked)."""
    join_wait_s: float = 3.0
    """Longest wait for another gossip member before claiming local addresses alone. Three
    join attempts at the LAN preset; a node with no seeds configured and no other agent
    pod does not wait."""
    seed_pods_selector: str = "app.kubernetes.io/component=lbnodeagent"
    """Without static seeds, the agent pods matching this label selector in the install
    namespace are the seeds (their pod IPs: host addresses, the DaemonSet is hostNetwork)."""
    shutdown_grace_s: float = 2.0
    """Bound of the shielded withdrawal at shutdown (a few netlink round trips normally)."""
    reflector: ReflectorSettings = field(default_factory=ReflectorSettings)
    change_buffer: int = 256
    """Watch changes buffered per reflector; the consumer only sets an event, so it never
    falls behind for long."""
    task_backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        if not self.node_name:
            raise ConfigError("the node name is required (--node-name or $PURELB_NODE_NAME)",
                              path="node-name", value=self.node_name)
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics port must be 0..65535, got {self.metrics_port}",
                              path="port", value=self.metrics_port)
        limit = self.agent.max_reconcile_interval_s
        if not 0 < self.resync_s <= (limit if limit is not None else math.inf):
            raise ConfigError(f"resync period {self.resync_s} s must be > 0 and <= {limit} s "
                              "(half the local address lifetime)", path="resync",
                              value=self.resync_s)
        for name in ("join_wait_s", "shutdown_grace_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0", path=name, value=getattr(self, name))

    def local(self) -> AgentDaemonSettings:
        """Fast preset for namespace tests."""
        return replace(self, reflector=ReflectorSettings.local(),
                       task_backoff=Backoff(initial_s=0.05, cap_s=1.0, reset_after_s=5.0))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One reconcile's result, handed to the reporter."""

    plan: Plan
    inputs: Inputs
    result: ReconcileResult
    newly_local: frozenset[IPAddress]
    newly_virtual: frozenset[IPAddress]


class AgentDaemon:
    """Wiring of the node agent (see the module docstring). ``await nursery.start(d.run)``."""

    def __init__(self, client: KubeClient, settings: AgentDaemonSettings, *,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self.settings = settings
        self.node = PlanNode(settings.node_name)
        self.health = Health(SYNCED, NETLINK)
        self.metrics = AgentMetrics()
        self._recorder = EventRecorder(client, EventSettings(
            reporting_controller=EVENT_SOURCE, reporting_instance=settings.node_name),
            now=wall_clock)
        self._reflectors: dict[str, Reflector] = {}
        self._dirty = trio.Event()
        self._outcome: Outcome | None = None
        self._report_ready = trio.Event()
        self._local: frozenset[IPAddress] = frozenset()
        self._virtual: frozenset[IPAddress] = frozenset()
        self._warned: set[tuple[str, str, str]] = set()
        self._selector_warned = False
        self._pod_seeds_seen = False
        self._member: Member | None = None
        self.reconciles = 0
        """Reconciles done (status and tests)."""
        self.metrics_port = 0

    def __repr__(self) -> str:
        return (f"AgentDaemon({self.node!r}, local={sorted(map(str, self._local))}, "
                f"virtual={len(self._virtual)})")

    def poke(self) -> None:
        """Ask for a reconcile soon (idempotent; many pokes make one reconcile)."""
        self._dirty.set()

    # ------------------------------------------------------------------ the daemon

    async def run(self, *, task_status: trio.TaskStatus[AgentDaemon] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        s = self.settings
        LOGGER.info("event=agent_starting node=%s namespace=%s netns=%s", s.node_name,
                    s.namespace, s.netns)
        async with trio.open_nursery() as nursery:
            self.metrics_port = await nursery.start(partial(
                supervise, "metrics", serve_health_and_metrics, s.metrics_host, s.metrics_port,
                self.health, self.metrics.registry, backoff=s.task_backoff))
            for resource, namespace, indexers, fields in (
                    (SERVICES, None, None, None),
                    (ENDPOINT_SLICES, None, ENDPOINTSLICE_BY_SERVICE, None),
                    (SERVICE_GROUPS, s.namespace, None, None),
                    (LB_NODE_AGENTS, s.namespace, None, None),
                    # only the key Secret: a rotation is installed without a restart
                    (SECRETS, s.namespace, None, {"metadata.name": s.key_secret})):
                await nursery.start(partial(supervise, resource.plural, self._watch, resource,
                                            namespace, indexers, fields, backoff=s.task_backoff))
            self.health.set(SYNCED, True)
            nursery.start_soon(partial(supervise, "reporter", self._reporter,
                                       backoff=s.task_backoff))
            await nursery.start(partial(supervise, "core", self._core, backoff=s.task_backoff))
            task_status.started(self)

    # ------------------------------------------------------------------ watches

    async def _watch(self, resource: Resource, namespace: str | None,
                     indexers: Mapping[str, Any] | None, fields: Mapping[str, str] | None, *,
                     task_status: trio.TaskStatus[Reflector] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[Change](self.settings.change_buffer)
        reflector = Reflector(self._client, resource, namespace=namespace, indexers=indexers,
                              field_selector=fields, send_channel=send,
                              settings=self.settings.reflector)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._consume, receive)
            await nursery.start(reflector.run)
            self._reflectors[resource.plural] = reflector
            task_status.started(reflector)

    async def _consume(self, receive: trio.MemoryReceiveChannel[Change]) -> None:
        async with receive:
            async for _change in receive:
                self.poke()

    def _config(self) -> tuple[LBNodeAgentConfig | None, AgentSettings]:
        choice = choose_config(self._reflectors["lbnodeagents"].list())
        for name, reason in choice.ignored:
            LOGGER.debug("event=lbnodeagent_ignored name=%s reason=%s", name, reason)
        if choice.config is None:
            self.metrics.set_config_state("invalid" if choice.ignored else "deselected")
            return None, self.settings.agent
        self.metrics.set_config_state("configured")
        if choice.config.has_node_selector and not self._selector_warned:
            self._selector_warned = True
            LOGGER.warning("event=node_selector_ignored lbnodeagent=%s/%s: node selectors are "
                           "not evaluated (the agent does not read Nodes); it applies to "
                           "every node", choice.config.namespace, choice.config.name)
        return choice.config, choice.config.settings(self.settings.agent)

    # ------------------------------------------------------------------ core (netlink owner)

    def _keyring(self) -> tuple[str, Keyring]:
        """(resourceVersion, keyring) of the key Secret, from the cache."""
        s = self.settings
        secret = self._reflectors["secrets"].get(s.namespace, s.key_secret)
        if secret is None:
            raise ConfigError(f"Secret {s.namespace}/{s.key_secret} with the gossip keys does "
                              "not exist; create it (see deploy/)", path="key-secret",
                              value=s.key_secret)
        data = secret.get("data") or {}
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"Secret {s.namespace}/{s.key_secret} has no data: put the gossip "
                              "keys there", path="key-secret", value=s.key_secret)
        version = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        return version, parse_secret_data(data)

    def _rotate_keys(self, member: Member, installed: str) -> str:
        """Install a changed keyring; a bad one is logged and the old keys stay."""
        try:
            version, keyring = self._keyring()
        except ConfigError as exc:
            LOGGER.warning("event=gossip_keyring_rejected error=%s; keeping the current keys",
                           exc)
            return installed
        if version != installed:
            member.set_keyring(keyring)
        return version

    async def _core(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        s = self.settings
        config, settings = self._config()
        key_version, keyring = self._keyring()
        if not s.gossip_seeds:
            await self.gossip_seeds()  # learn whether other agents exist before deciding to wait
        async with await NetlinkWriter.open(s.netns, settings) as writer, \
                await Announcer.open(s.netns) as announcer:
            vif = await writer.ensure_virtual_interface()
            selector = config.local_interface if config else "default"
            _links, _addrs, subnets = await discover(
                writer, selector=selector, virtual_interface=settings.virtual_interface)
            nets = tuple(sorted(servable_networks(subnets),
                                key=lambda n: (n.version, n.network_address.packed)))
            member_cfg = MemberConfig(
                name=s.node_name, bind=s.gossip_bind, advertise=s.gossip_advertise,
                cluster=s.cluster, keyring=keyring, seeds=s.gossip_seeds,
                meta=MemberMeta(subnets=nets, ready=False), timings=s.gossip_timings)
            async with trio.open_nursery() as nursery:
                member: Member = await nursery.start(partial(
                    serve_member, member_cfg, seed_provider=self.gossip_seeds,
                    registry=self.metrics.gossip_registry()))
                self._member = member
                nursery.start_soon(self._follow_membership, member)
                self.health.set(NETLINK, True)
                task_status.started()
                try:
                    await self._loop(writer, announcer, member, vif, nets, key_version,
                                     nursery)
                finally:
                    self.health.set(NETLINK, False)
                    # a restarted core starts from nothing: re-announce, re-report
                    self._local = self._virtual = frozenset()
                    with trio.move_on_after(s.shutdown_grace_s, shield=True) as scope:
                        result = await writer.remove_owned()
                        LOGGER.info("event=addresses_withdrawn count=%d",
                                    len(result.diff.delete))
                        self.metrics.withdrawals.inc(len(result.diff.delete))
                    if scope.cancelled_caught:
                        LOGGER.warning("event=withdraw_timeout seconds=%s: addresses may "
                                       "remain until the next start sweeps them",
                                       s.shutdown_grace_s)

    async def _follow_membership(self, member: Member) -> None:
        """Any membership event (join, suspect, dead, left, fenced) -> reconcile now."""
        while True:
            async with member.subscribe(max_buffer=1024) as events:
                self.poke()
                async for _event in events:
                    self.poke()

    def _joined(self, member: Member, started: float) -> bool:
        if len(member.alive_members()) > 1:
            return True
        if not self.settings.gossip_seeds and not self._pod_seeds_seen:
            return True  # a one-node cluster: nobody to wait for
        return trio.current_time() - started >= self.settings.join_wait_s

    async def gossip_seeds(self) -> list[Address]:
        """Static seeds, else the other agent pods' IPs (the gossip seed provider)."""
        s = self.settings
        if s.gossip_seeds:
            return list(s.gossip_seeds)
        page = await self._client.list(PODS, namespace=s.namespace,
                                       label_selector=s.seed_pods_selector)
        own = (s.gossip_advertise or s.gossip_bind).host
        seeds = []
        for pod in page.get("items") or ():
            ip = str((pod.get("status") or {}).get("podIP") or "")
            if ip and ip != own:
                seeds.append(Address(ip, s.gossip_bind.port))
        self._pod_seeds_seen = bool(seeds)
        return seeds

    async def _loop(self, writer: NetlinkWriter, announcer: Announcer, member: Member,
                    vif: LinkInfo, nets: tuple[IPNetwork, ...], key_version: str,
                    nursery: trio.Nursery) -> None:
        s = self.settings
        started = trio.current_time()
        ready = False
        while True:
            self._dirty = trio.Event()
            key_version = self._rotate_keys(member, key_version)
            config, settings = self._config()
            if not ready and self._joined(member, started):
                ready = True
                member.update_meta(ready=True)
                LOGGER.info("event=gossip_ready members=%d", len(member.alive_members()))
            began = trio.current_time()
            outcome = "ok"
            try:
                if vif.name != settings.virtual_interface:
                    LOGGER.warning("event=virtual_interface_changed old=%s new=%s: restarting "
                                   "the netlink task", vif.name, settings.virtual_interface)
                    raise _Restart()
                links, _addrs, subnets = await discover(
                    writer, selector=config.local_interface if config else "default",
                    virtual_interface=settings.virtual_interface)
                new_nets = tuple(sorted(servable_networks(subnets),
                                        key=lambda n: (n.version, n.network_address.packed)))
                if new_nets != nets:
                    nets = new_nets
                    member.update_meta(subnets=nets)
                    LOGGER.info("event=subnets_changed subnets=%s", ",".join(map(str, nets)))
                await self._reconcile_once(writer, announcer, member, vif, links, subnets,
                                           config, settings, ready, nursery)
            except _Restart:
                raise
            except Exception as exc:  # netlink trouble: logged, retried at the next poke
                outcome = "error"
                LOGGER.warning("event=reconcile_failed error=%r; retrying in %s s", exc,
                               s.resync_s)
            self.metrics.reconcile_seconds.labels(outcome).observe(trio.current_time() - began)
            with trio.move_on_after(s.resync_s if ready else min(s.resync_s, 0.2)):
                await self._dirty.wait()

    async def _reconcile_once(self, writer: NetlinkWriter, announcer: Announcer, member: Member,
                              vif: LinkInfo, links: Iterable[LinkInfo], subnets: Any,
                              config: LBNodeAgentConfig | None, settings: AgentSettings,
                              ready: bool, nursery: trio.Nursery) -> None:
        services = self._reflectors["services"].list()
        slices = self._reflectors["endpointslices"]
        groups, skipped_groups = parse_groups(self._reflectors["servicegroups"].list())
        inputs = build_inputs(
            services, groups,
            lambda ns, name: slices.by_index("service", f"{ns}/{name}"))
        for sk in (*skipped_groups, *inputs.skipped):
            LOGGER.debug("event=input_skipped what=%s reason=%s", sk.what, sk.reason)
        view = member.view()
        node = self.node
        winner: Callable[[IPAddress], Any] = (
            (lambda ip: view.winner(ip)) if ready and config is not None else (lambda ip: None))
        addresses = inputs.addresses if config is not None else ()
        p = plan(PlanInput(node=node, addresses=addresses, local_subnets=tuple(subnets),
                           virtual_interface=VirtualInterface(vif.name, vif.index),
                           previous_local=self._local), winner)
        result = await writer.reconcile(p.specs(settings))
        self.reconciles += 1
        failed = {e.address for e in result.errors}
        local = frozenset(a.interface.ip for a in p.addresses
                          if a.kind is AddressKind.LOCAL and str(a.interface) not in failed
                          and str(a.interface.ip) not in failed)
        virtual = frozenset(a.interface.ip for a in p.addresses if a.kind is AddressKind.VIRTUAL)
        newly_local, lost = local - self._local, self._local - local
        newly_virtual = virtual - self._virtual
        self._local, self._virtual = local, virtual
        m = self.metrics
        m.wins.inc(len(newly_local))
        m.losses.inc(len(lost))
        m.withdrawals.inc(len(result.diff.delete))
        renewed = sum(1 for spec in result.diff.add if spec.interface.ip in (local | virtual)
                      and spec.interface.ip not in newly_local | newly_virtual)
        m.renewals.inc(renewed)
        m.additions.inc(len(result.diff.add) - renewed)
        m.renewal_errors.inc(len(result.errors))
        m.addresses.labels("local").set(len(local))
        m.addresses.labels("virtual").set(len(virtual))
        if result.diff.ops:
            LOGGER.info("event=reconciled added=%d deleted=%d foreign=%d errors=%d local=%s",
                        len(result.diff.add), len(result.diff.delete), len(result.diff.foreign),
                        len(result.errors), ",".join(sorted(map(str, local))) or "-")
        macs = {link.index: link.mac for link in links}
        for ann in p.announce:
            mac = macs.get(ann.index)
            if ann.address not in newly_local or settings.garp_count == 0 or mac is None:
                continue
            nursery.start_soon(self._announce, announcer, member, ann.index, ann.ifname, mac,
                               ann.address, settings)
        self._outcome = Outcome(p, inputs, result, newly_local, newly_virtual)
        self._report_ready.set()

    async def _announce(self, announcer: Announcer, member: Member, index: int, ifname: str,
                        mac: bytes, address: IPAddress, settings: AgentSettings) -> None:
        def still_wins() -> bool:
            return address in self._local and member.view().winner(address) == self.node

        sent = await announcer.announce(
            ifname=ifname, index=index, mac=mac, address=address, count=settings.garp_count,
            interval_s=settings.garp_interval_s, still_wins=still_wins,
            initial_delay_s=settings.garp_initial_delay_s)
        ok, bad = ((self.metrics.garp_sent, self.metrics.garp_errors) if address.version == 4
                   else (self.metrics.na_sent, self.metrics.na_errors))
        ok.inc(sent)
        if still_wins():
            bad.inc(settings.garp_count - sent)

    # ------------------------------------------------------------------ reporter

    async def _reporter(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                        ) -> None:
        """Annotations and Events for the latest outcome (older ones are superseded)."""
        task_status.started()
        while True:
            await self._report_ready.wait()
            self._report_ready = trio.Event()
            outcome = self._outcome
            if outcome is not None:
                await self._report(outcome)

    def _service_object(self, key: str) -> JSON | None:
        ns, _, name = key.partition("/")
        obj = self._reflectors["services"].get(ns, name)
        if obj is None:
            return None
        return {**obj, "kind": "Service", "apiVersion": "v1"}

    async def _report(self, outcome: Outcome) -> None:
        p, node = outcome.plan, self.node
        addr_services: dict[IPAddress, tuple[ServiceKey, ...]] = {
            a.address: tuple(s.key for s in a.services) for a in outcome.inputs.addresses}
        for key, wanted in p.annotations.items():
            obj = self._service_object(key)
            if obj is not None:
                await self._write_annotations(obj, wanted)
        for a in p.addresses:
            ip = a.interface.ip
            if ip in outcome.newly_local or ip in outcome.newly_virtual:
                local = a.kind is AddressKind.LOCAL
                for key in addr_services.get(ip, ()):
                    obj = self._service_object(key)
                    if obj is None:
                        continue
                    if local:
                        self.metrics.announced.labels(key, node, str(ip)).set(1)
                    await self._recorder.emit(
                        obj, type=EventType.NORMAL,
                        reason="AnnouncingLocal" if local else "AnnouncingNonLocal",
                        action="Announce", note=f"Node {node} announcing {ip} on {a.ifname}")
        for gauge_labels in list(self._announced_labels()):
            if ipaddr(gauge_labels[2]) not in self._local:
                self.metrics.announced.remove(*gauge_labels)
        for err in outcome.result.errors:
            for key in addr_services.get(ipaddr(err.address.split("/")[0]), ()):
                obj = self._service_object(key)
                if obj is not None:
                    await self._recorder.emit(obj, type=EventType.WARNING,
                                              reason="AnnouncementFailed", action="Announce",
                                              note=str(err))
        current = {(w.service, str(w.address), w.reason.value) for w in p.warnings}
        self._warned &= current  # a warning that went away is reported again if it returns
        for w in p.warnings:
            mark = (w.service, str(w.address), w.reason.value)
            if mark in self._warned:
                continue
            self._warned.add(mark)
            obj = self._service_object(w.service)
            if obj is not None:
                await self._recorder.emit(obj, type=EventType.WARNING, reason=w.reason.value,
                                          action="Announce", note=w.message)

    def _announced_labels(self) -> Iterable[tuple[str, str, str]]:
        for metric in self.metrics.announced.collect():
            for sample in metric.samples:
                yield (sample.labels["service"], sample.labels["node"], sample.labels["ip"])

    async def _write_annotations(self, obj: JSON, wanted: Mapping[str, str]) -> None:
        """Set our ``announcing`` values; clear those that still name us but no longer apply.

        Written only on change. A value another node wrote is never cleared: the remove is
        a JSON patch guarded by a ``test`` of the value we saw, so a new winner's write that
        raced ours is kept.
        """
        meta = obj.get("metadata") or {}
        current = meta.get("annotations") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        sets, stale = annotation_changes(current, wanted, self.node)
        try:
            if sets:
                await self._client.patch(SERVICES, str(name), {"metadata": {"annotations": sets}},
                                         namespace=ns, patch_type=PatchType.MERGE)
                self.metrics.updates.labels("service").inc()
            for k in stale:
                path = "/metadata/annotations/" + k.replace("~", "~0").replace("/", "~1")
                await self._client.patch(SERVICES, str(name), [
                    {"op": "test", "path": path, "value": current[k]},
                    {"op": "remove", "path": path}], namespace=ns, patch_type=PatchType.JSON)
                self.metrics.updates.labels("service").inc()
        except KubeApiError as exc:
            self.metrics.update_errors.labels("service").inc()
            LOGGER.info("event=annotation_write_skipped service=%s/%s error=%s (the next "
                        "reconcile retries)", ns, name, exc)


def annotation_changes(current: Mapping[str, str], wanted: Mapping[str, str], node: str
                       ) -> tuple[dict[str, str], list[str]]:
    """(annotations to set, announcing keys to remove) for one Service. Pure.

    Set what differs from ``wanted``; remove an ``announcing`` key we no longer want only
    while its value still names this node (another node's value is its business).
    """
    sets = {k: v for k, v in wanted.items() if current.get(k) != v}
    stale = [k for k in ANNOUNCING_KEYS.values() if k not in wanted
             and str(current.get(k, "")).startswith(f"{node},")]
    return sets, stale


class _Restart(Exception):
    """The virtual interface changed: the core task restarts with the new settings."""


def ipaddr(text: str) -> IPAddress:
    return ipaddress.ip_address(text)
