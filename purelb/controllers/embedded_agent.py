"""The agent of a single gateway (no gossip): the agent's pure plan, applied or only shown.

With gossip off (the embedded default) this host is the only candidate, so the election
is trivial: it wins every local address it can reach. The rest is the node agent's own
machinery: :func:`purelb.agent.plan.plan` decides, :class:`NetlinkWriter` applies
(``kube-lb0`` for virtual addresses, the LAN NIC for local ones, each marked with our
IFA_PROTO so only ours are ever removed), :class:`Announcer` sends GARP / unsolicited NA
for newly won local addresses, and the ``purelb.io/announcing-IPv4/-IPv6`` annotations go
on the Services (merge patch, only when they change).

``netlink=False`` is the non-root mode: interfaces are only *read* (a netlink dump needs no
privilege), nothing is written to them nor to the API (announcing annotations would claim
addresses that are not configured). Both modes write the plan to ``plan.json`` in the
state directory, where ``purelb status`` shows it.

On cancellation (SIGTERM) the netlink mode withdraws every address it owns, in a shielded
scope bounded by ``shutdown_grace_s``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from purelb.agent import AgentSettings
from purelb.agent.garp import Announcer
from purelb.agent.interfaces import discover
from purelb.agent.netlink import NetlinkWriter
from purelb.agent.plan import (
    ANNOUNCING_KEYS,
    AddressInput,
    NodeName,
    Plan,
    PlanInput,
    ServiceKey,
    VirtualInterface,
    plan,
)
from purelb.agent.records import IPAddress
from purelb.controllers.agent_inputs import build_inputs, parse_groups
from purelb.errors import ApiError, ConfigError
from purelb.kube import (
    LB_NODE_AGENTS,
    SERVICE_GROUPS,
    SERVICES,
    KubeClient,
    NotFound,
    Reflector,
)

LOGGER = logging.getLogger(__name__)

JSON = Mapping[str, Any]
PLAN_FILE = "plan.json"
"""Written in the state directory; ``purelb status`` reads it next to the kubeconfig."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostAgentSettings:
    node_name: str
    namespace: str
    state_dir: Path
    netlink: bool = True
    """False: plan only (see the module docstring)."""
    netns: str | None = None
    agent: AgentSettings = field(default_factory=AgentSettings)
    shutdown_grace_s: float = 2.0
    """Bound of the shielded withdrawal at shutdown (a few netlink round trips normally)."""
    debounce_s: float = 0.2
    """Wait this long after a change before planning, so a burst of allocations (each a
    Service update) gives one plan and one log line, not hundreds."""
    rescan_s: float = 30.0
    """Plan and reconcile at least this often without any change: re-reads interfaces (an
    address added to the NIC changes which pool addresses are local), puts back an address
    someone removed, and refreshes the finite lifetime of local addresses, which must
    happen within ``agent.local_valid_lft_s / 2`` (150 s by default)."""


def build_addresses(services: Iterable[JSON], groups: Iterable[JSON]
                    ) -> tuple[tuple[AddressInput, ...], tuple[str, ...]]:
    """Allocated Service addresses placed by their groups, with what was skipped and why.

    The node agent's own rules (``agent_inputs``). A gateway has no Pods, hence no
    EndpointSlices: an ``externalTrafficPolicy: Local`` Service has no local endpoint here.
    """
    accepted, bad_groups = parse_groups(groups)
    inputs = build_inputs(services, accepted, lambda _ns, _name: ())
    return inputs.addresses, tuple(f"{x.what}: {x.reason}" for x in (*bad_groups,
                                                                     *inputs.skipped))


def plan_document(p: Plan, node: str, skipped: Sequence[str], *, netlink: bool
                  ) -> dict[str, Any]:
    """The plan as JSON (what ``purelb status`` prints)."""
    return {
        "node": node,
        "netlink": netlink,
        "addresses": [{"address": str(a.interface), "interface": a.ifname,
                       "kind": a.kind.name.lower(), "services": list(a.services)}
                      for a in p.addresses],
        "warnings": [w.message for w in p.warnings],
        "skipped": list(skipped),
    }


def _agent_config(agents: Sequence[JSON], base: AgentSettings) -> tuple[str, AgentSettings]:
    """(local interface selector, settings) from the first LBNodeAgent by name (PureLB's
    ``localint``, ``extlbint``, ``sendgarp``); defaults without one."""
    for obj in sorted(agents, key=lambda o: str((o.get("metadata") or {}).get("name"))):
        local = (obj.get("spec") or {}).get("local") or {}
        settings = replace(base, virtual_interface=str(local.get("extlbint") or
                                                       base.virtual_interface))
        if local.get("sendgarp") is False:
            settings = replace(settings, garp_count=0)
        return str(local.get("localint") or "default"), settings
    return "default", base


def _log_changes(previous: Mapping[str, Any] | None, doc: Mapping[str, Any]) -> None:
    """One line per address that appeared in or left the plan (not the whole plan again)."""
    def keyed(d: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
        return {a["address"]: a for a in (d or {}).get("addresses", ())}

    old, new = keyed(previous), keyed(doc)
    for address in sorted(new.keys() - old.keys()):
        a = new[address]
        LOGGER.info("event=planned address=%s interface=%s kind=%s services=%s netlink=%s",
                    address, a["interface"], a["kind"], ",".join(a["services"]),
                    "on" if doc.get("netlink") else "off")
    for address in sorted(old.keys() - new.keys()):
        LOGGER.info("event=unplanned address=%s", address)
    for warning in sorted(set(doc.get("warnings", ())) - set((previous or {}).get("warnings", ()))):
        LOGGER.warning("event=plan_warning message=%r", warning)
    for skipped in sorted(set(doc.get("skipped", ())) - set((previous or {}).get("skipped", ()))):
        LOGGER.warning("event=plan_skipped reason=%r", skipped)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class HostAgent:
    """``await nursery.start(HostAgent(client, settings).run)``; ready after the first plan."""

    def __init__(self, client: KubeClient, settings: HostAgentSettings) -> None:
        self._client = client
        self.settings = settings
        self._changed = trio.Event()
        self._reflectors: dict[str, Reflector] = {}
        self._local: frozenset[IPAddress] = frozenset()
        self._reported: dict[str, dict[str, str]] = {}
        self.plans = 0
        """Plans computed (tests read it)."""

    def __repr__(self) -> str:
        return (f"HostAgent({self.settings.node_name!r}, netlink={self.settings.netlink}, "
                f"local={sorted(map(str, self._local))})")

    async def _watch(self, resource: Any, namespace: str | None, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[Any](64)  # the consumer only sets an event
        reflector = Reflector(self._client, resource, namespace=namespace, send_channel=send)
        async with trio.open_nursery() as nursery:
            await nursery.start(reflector.run)
            self._reflectors[resource.plural] = reflector
            task_status.started()
            async with receive:
                async for _change in receive:
                    self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        s = self.settings
        async with trio.open_nursery() as nursery:
            await nursery.start(self._watch, SERVICES, None)
            await nursery.start(self._watch, SERVICE_GROUPS, s.namespace)
            await nursery.start(self._watch, LB_NODE_AGENTS, s.namespace)
            async with await NetlinkWriter.open(s.netns, s.agent) as writer:
                if not s.netlink:
                    await self._loop(writer, None, task_status)
                    return
                try:
                    announcer = await Announcer.open(s.netns)
                except PermissionError as exc:
                    raise ConfigError(
                        f"the agent cannot open its raw sockets ({exc}): it needs root (or "
                        "CAP_NET_ADMIN and CAP_NET_RAW); run as root, or pass --no-netlink to "
                        "allocate and plan without touching interfaces",
                        path="no-netlink", value=False) from None
                async with announcer:
                    try:
                        await self._loop(writer, announcer, task_status)
                    finally:
                        with trio.move_on_after(s.shutdown_grace_s, shield=True) as scope:
                            result = await writer.remove_owned()
                            LOGGER.info("event=addresses_withdrawn count=%d",
                                        len(result.diff.delete))
                        if scope.cancelled_caught:
                            LOGGER.warning("event=withdraw_timeout seconds=%s: the next start "
                                           "sweeps what is left", s.shutdown_grace_s)

    async def _loop(self, writer: NetlinkWriter, announcer: Announcer | None,
                    task_status: trio.TaskStatus[None]) -> None:
        s = self.settings
        node = NodeName(s.node_name)

        def only_me(_address: IPAddress) -> NodeName:
            return node  # no gossip: this host is the only candidate

        previous: dict[str, Any] | None = None
        started = False
        async with trio.open_nursery() as announcements:
            while True:
                self._changed = trio.Event()
                localint, settings = _agent_config(self._reflectors["lbnodeagents"].list(),
                                                   s.agent)
                vif_index = 0
                if announcer is not None:
                    vif_index = (await writer.ensure_virtual_interface()).index
                links, _addrs, subnets = await discover(
                    writer, selector=localint, virtual_interface=settings.virtual_interface)
                if not vif_index:
                    vif_index = next((ln.index for ln in links
                                      if ln.name == settings.virtual_interface), 0)
                addresses, skipped = build_addresses(self._reflectors["services"].list(),
                                                     self._reflectors["servicegroups"].list())
                result = plan(PlanInput(node=node, addresses=addresses, local_subnets=subnets,
                                        virtual_interface=VirtualInterface(
                                            settings.virtual_interface, vif_index),
                                        previous_local=self._local), only_me)
                self.plans += 1
                self._local = result.local  # before any announcement asks still_wins
                if announcer is not None:
                    outcome = await writer.reconcile(result.specs(settings))
                    for err in outcome.errors:
                        LOGGER.warning("event=address_failed error=%s retrying_in_s=%s", err,
                                       s.rescan_s)
                    macs = {ln.index: ln.mac for ln in links}
                    for ann in result.announce:
                        mac = macs.get(ann.index)
                        if mac and settings.garp_count:
                            announcements.start_soon(partial(
                                announcer.announce, ifname=ann.ifname, index=ann.index, mac=mac,
                                address=ann.address, count=settings.garp_count,
                                interval_s=settings.garp_interval_s,
                                still_wins=partial(self._holds, ann.address)))
                    await self._report(result)
                doc = plan_document(result, s.node_name, skipped, netlink=s.netlink)
                if doc != previous:
                    _write_atomically(s.state_dir / PLAN_FILE, json.dumps(doc, indent=2).encode())
                    _log_changes(previous, doc)
                    previous = doc
                if not started:
                    task_status.started()
                    started = True
                # Level-triggered: a change, or rescan_s at the latest (which also refreshes
                # the finite lifetimes of local addresses and heals a removed address).
                with trio.move_on_after(s.rescan_s):
                    await self._changed.wait()
                await trio.sleep(s.debounce_s)

    def _holds(self, address: IPAddress) -> bool:
        return address in self._local

    async def _report(self, result: Plan) -> None:
        """Announcing annotations on each Service, written only when they differ."""
        for obj in self._reflectors["services"].list():
            meta = obj.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            wanted = dict(result.annotations.get(ServiceKey(key), {}))
            current = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if k in ANNOUNCING_KEYS.values()}
            if current == wanted:
                continue
            patch = {"metadata": {"annotations": {**{k: None for k in current},
                                                  **wanted}}}
            try:
                await self._client.patch(SERVICES, str(meta.get("name")), patch,
                                         namespace=str(meta.get("namespace")))
            except NotFound:
                continue  # deleted meanwhile
            except ApiError as exc:
                LOGGER.warning("event=annotate_failed service=%s error=%s retrying", key, exc)
