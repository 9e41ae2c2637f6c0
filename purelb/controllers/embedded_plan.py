"""``--no-netlink``: compute the agent's plan for this host and report it; touch no interface.

The non-root mode of ``purelb embedded``. Interfaces are only *read* (a netlink dump needs
no privilege), the plan is the agent's own pure :func:`purelb.agent.plan.plan` with this
host as the only candidate (no gossip: one gateway wins every local address it can
reach), and the result goes to the log and to ``plan.json`` in the state directory, where
``purelb status`` shows it. Nothing is written to the API either: announcing annotations
would claim addresses that are not configured.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from purelb.agent import AgentSettings
from purelb.agent.interfaces import discover
from purelb.agent.netlink import NetlinkWriter
from purelb.agent.plan import (
    AddressInput,
    NodeName,
    Plan,
    PlanInput,
    ServiceInput,
    ServiceKey,
    VirtualInterface,
    plan,
)
from purelb.agent.records import IPAddress, LocalSubnet
from purelb.errors import ConfigError
from purelb.ipam.index import AddressIndex
from purelb.kube import LB_NODE_AGENTS, SERVICE_GROUPS, SERVICES, KubeClient, Reflector
from purelb.model import annotations, parse_service, validate_service_groups

LOGGER = logging.getLogger(__name__)

JSON = Mapping[str, Any]
PLAN_FILE = "plan.json"
"""Written in the state directory; ``purelb status`` reads it next to the kubeconfig."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOnlySettings:
    node_name: str
    namespace: str
    state_dir: Path
    netns: str | None = None
    debounce_s: float = 0.2
    """Wait this long after a change before planning, so a burst of allocations (each a
    Service update) gives one plan and one log line, not hundreds."""
    rescan_s: float = 30.0
    """Re-read interfaces this often: an address added to the NIC changes which pool
    addresses are local. Cheap (three dumps) and never urgent without netlink writes."""


def build_addresses(services: Iterable[JSON], groups: Iterable[JSON]
                    ) -> tuple[tuple[AddressInput, ...], tuple[str, ...]]:
    """Allocated Service addresses placed by their groups (PURE); also what was skipped."""
    accepted = validate_service_groups(list(groups)).accepted
    index = AddressIndex(accepted)
    by_address: dict[IPAddress, list[ServiceInput]] = {}
    skipped: list[str] = []
    for obj in services:
        try:
            svc = parse_service(obj)
        except ConfigError as exc:
            skipped.append(str(exc))
            continue
        if not svc.is_load_balancer or not svc.ingress:
            continue
        if svc.annotations.get(annotations.ALLOCATED_BY) != annotations.BRAND:
            continue
        for text in dict.fromkeys(svc.ingress):
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                skipped.append(f"Service {svc.key}: ingress {text!r} is not an IP address")
                continue
            by_address.setdefault(ip, []).append(ServiceInput(ServiceKey(svc.key)))
    out: list[AddressInput] = []
    for ip, entries in by_address.items():
        placement = index.placement(ip)
        if placement is None:
            skipped.append(f"address {ip}: in no accepted ServiceGroup")
            continue
        aggregation = (None if placement.prefix_length == placement.subnet.prefixlen
                       else placement.prefix_length)
        out.append(AddressInput(ip, placement.subnet, aggregation, tuple(entries)))
    out.sort(key=lambda a: (a.address.version, a.address.packed))
    return tuple(out), tuple(skipped)


def plan_document(p: Plan, node: str, skipped: Sequence[str]) -> dict[str, Any]:
    """The plan as JSON (what ``purelb status`` prints)."""
    return {
        "node": node,
        "netlink": False,
        "addresses": [{"address": str(a.interface), "interface": a.ifname,
                       "kind": a.kind.name.lower(), "services": list(a.services)}
                      for a in p.addresses],
        "warnings": [w.message for w in p.warnings],
        "skipped": list(skipped),
    }


def _interface_settings(agents: Sequence[JSON]) -> tuple[str, str]:
    """(local interface selector, virtual interface) from the first LBNodeAgent, by name."""
    for obj in sorted(agents, key=lambda o: str((o.get("metadata") or {}).get("name"))):
        local = (obj.get("spec") or {}).get("local") or {}
        return str(local.get("localint") or "default"), str(local.get("extlbint") or "kube-lb0")
    return "default", AgentSettings().virtual_interface


def _log_changes(previous: Mapping[str, Any] | None, doc: Mapping[str, Any]) -> None:
    """One line per address that appeared in or left the plan (not the whole plan again)."""
    def keyed(d: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
        return {a["address"]: a for a in (d or {}).get("addresses", ())}

    old, new = keyed(previous), keyed(doc)
    for address in new.keys() - old.keys():
        a = new[address]
        LOGGER.info("event=planned address=%s interface=%s kind=%s services=%s netlink=off",
                    address, a["interface"], a["kind"], ",".join(a["services"]))
    for address in old.keys() - new.keys():
        LOGGER.info("event=unplanned address=%s netlink=off", address)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def run_plan_only(client: KubeClient, settings: PlanOnlySettings, *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Watch Services, groups and agents; re-plan after each burst of changes."""
    changed = trio.Event()
    reflectors: dict[str, Reflector] = {}

    async def watch(resource: Any, namespace: str | None, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[Any](64)  # consumer only sets an event
        reflector = Reflector(client, resource, namespace=namespace, send_channel=send)
        async with trio.open_nursery() as nursery:
            await nursery.start(reflector.run)
            reflectors[resource.plural] = reflector
            task_status.started()
            async with receive:
                async for _change in receive:
                    changed.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(watch, SERVICES, None)
        await nursery.start(watch, SERVICE_GROUPS, settings.namespace)
        await nursery.start(watch, LB_NODE_AGENTS, settings.namespace)
        async with await NetlinkWriter.open(settings.netns) as reader:
            subnets: tuple[LocalSubnet, ...] = ()
            vif = VirtualInterface(AgentSettings().virtual_interface, 0)
            last_scan = -settings.rescan_s
            previous: dict[str, Any] | None = None
            started = False
            node = NodeName(settings.node_name)

            def only_me(_address: IPAddress) -> NodeName:
                return node  # no gossip: this host is the only candidate

            while True:
                localint, extlbint = _interface_settings(reflectors["lbnodeagents"].list())
                if trio.current_time() - last_scan >= settings.rescan_s:
                    links, _addrs, subnets = await discover(reader, selector=localint,
                                                            virtual_interface=extlbint)
                    index = next((ln.index for ln in links if ln.name == extlbint), 0)
                    vif = VirtualInterface(extlbint, index)
                    last_scan = trio.current_time()
                addresses, skipped = build_addresses(reflectors["services"].list(),
                                                     reflectors["servicegroups"].list())
                result = plan(PlanInput(node=node, addresses=addresses, local_subnets=subnets,
                                        virtual_interface=vif), only_me)
                doc = plan_document(result, settings.node_name, skipped)
                if doc != previous:
                    _write_atomically(settings.state_dir / PLAN_FILE,
                                      json.dumps(doc, indent=2).encode())
                    _log_changes(previous, doc)
                    previous = doc
                if not started:
                    task_status.started()
                    started = True
                changed = trio.Event()
                with trio.move_on_after(settings.rescan_s):
                    await changed.wait()
                await trio.sleep(settings.debounce_s)

