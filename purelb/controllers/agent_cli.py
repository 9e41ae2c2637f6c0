"""``purelb agent``: flags and environment -> :class:`AgentDaemonSettings` -> the daemon.

Flags have environment twins with PureLB's names where PureLB has them
(``PURELB_NODE_NAME``, ``PURELB_NAMESPACE``, ``PURELB_HOST``); a flag wins. SIGTERM and
SIGINT cancel the daemon: it withdraws its addresses and leaves the gossip group inside a
shielded, bounded cleanup, so another node takes over at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import replace

from purelb.agent import DEFAULT_AGENT_SETTINGS, AgentSettings
from purelb.agent.settings import Ownership
from purelb.controllers.agent import (
    DEFAULT_CLUSTER,
    DEFAULT_GOSSIP_PORT,
    DEFAULT_KEY_SECRET,
    DEFAULT_METRICS_PORT,
    DEFAULT_NAMESPACE,
    AgentDaemon,
    AgentDaemonSettings,
)
from purelb.controllers.daemon_cli import run_command, run_until_signal
from purelb.election import GossipTimings, lan, local, parse_address
from purelb.errors import ConfigError
from purelb.kube import add_kube_arguments

LOGGER = logging.getLogger(__name__)
_TIMINGS = {"lan": lan, "local": local}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kube_arguments(parser)
    parser.add_argument("--node-name", default=None, help="this node's name ($PURELB_NODE_NAME)")
    parser.add_argument("--namespace", default=None,
                        help=f"install namespace ($PURELB_NAMESPACE, {DEFAULT_NAMESPACE})")
    parser.add_argument("--host", default=None,
                        help="bind address of /metrics /healthz /readyz ($PURELB_HOST, 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"metrics port ($PURELB_PORT, {DEFAULT_METRICS_PORT}; 0 = any)")
    parser.add_argument("--netns", default=None,
                        help="manage the interfaces of this network namespace (name or path); "
                             "gossip and metrics sockets stay in the process's own namespace")
    g = parser.add_argument_group("gossip")
    g.add_argument("--gossip-bind", default=None, metavar="HOST[:PORT]",
                   help="UDP address of the gossip member ($PURELB_GOSSIP_BIND, else "
                        f"$PURELB_HOST:{DEFAULT_GOSSIP_PORT})")
    g.add_argument("--gossip-advertise", default=None, metavar="HOST[:PORT]",
                   help="address the others reach us at, when binding 0.0.0.0")
    g.add_argument("--gossip-seed", action="append", default=None, metavar="HOST[:PORT]",
                   help="member to join through (repeatable; $PURELB_GOSSIP_SEEDS, comma list)")
    g.add_argument("--cluster-name", default=None,
                   help=f"bound into every datagram ($PURELB_CLUSTER_NAME, {DEFAULT_CLUSTER})")
    g.add_argument("--gossip-key-secret", default=None,
                   help="Secret holding the gossip keys ($PURELB_GOSSIP_KEY_SECRET, "
                        f"{DEFAULT_KEY_SECRET})")
    g.add_argument("--gossip-timings", choices=sorted(_TIMINGS), default="lan",
                   help="lan (production) or local (namespace tests)")
    g.add_argument("--gossip-probe-interval", type=float, default=None, metavar="SECONDS",
                   help="seconds between probes (lan: 0.15); the probe timeout scales with it. "
                        "Longer tolerates longer stalls, detects failures later "
                        "(docs/operations.md, failover tuning)")
    g.add_argument("--gossip-suspicion-mult", type=float, default=None, metavar="N",
                   help="minimum suspicion = N x log10(members) x probe interval (lan: 2)")
    parser.add_argument("--resync-period", type=float, default=None, metavar="SECONDS",
                        help="reconcile at least this often ($PURELB_RESYNC_PERIOD, 10)")
    parser.add_argument("--ownership", choices=[o.value for o in Ownership], default=None,
                        help="how own addresses are recognised: auto (IFA_PROTO on Linux >= "
                             "6.3, else a state file), ifa-proto, state-file "
                             "($PURELB_OWNERSHIP)")
    parser.add_argument("--state-dir", default=None,
                        help="directory of the ownership state file ($PURELB_STATE_DIR, "
                             f"{DEFAULT_AGENT_SETTINGS.state_dir})")
    parser.add_argument("--log-level", default=None,
                        help="debug, info, warning, error ($PURELB_LOG_LEVEL, info)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="log line format ($PURELB_LOG_FORMAT, text)")


def settings_from_args(args: argparse.Namespace) -> AgentDaemonSettings:
    """Resolve flags, then environment, then defaults (raises ``ConfigError``)."""
    env = os.environ
    node = args.node_name or env.get("PURELB_NODE_NAME") or ""
    host = args.host or env.get("PURELB_HOST") or "0.0.0.0"
    port_raw = args.port if args.port is not None else env.get("PURELB_PORT")
    try:
        port = int(port_raw) if port_raw is not None else DEFAULT_METRICS_PORT
    except ValueError:
        raise ConfigError(f"$PURELB_PORT={port_raw!r} is not a port number", path="port",
                          value=port_raw) from None
    bind_text = args.gossip_bind or env.get("PURELB_GOSSIP_BIND") or env.get("PURELB_HOST")
    if not bind_text:
        raise ConfigError("the gossip address is unknown: pass --gossip-bind or set "
                          "$PURELB_HOST to the node's address", path="gossip-bind", value=None)
    seeds_text = args.gossip_seed if args.gossip_seed is not None else [
        s for s in (env.get("PURELB_GOSSIP_SEEDS") or "").split(",") if s.strip()]
    resync = args.resync_period
    if resync is None:
        raw = env.get("PURELB_RESYNC_PERIOD")
        resync = float(raw) if raw else 10.0
    agent: AgentSettings = DEFAULT_AGENT_SETTINGS
    ownership = args.ownership or env.get("PURELB_OWNERSHIP")
    if ownership:
        try:
            agent = replace(agent, ownership=Ownership(ownership))
        except ValueError:
            raise ConfigError(f"ownership {ownership!r} is not one of "
                              f"{[o.value for o in Ownership]}", path="ownership",
                              value=ownership) from None
    state_dir = args.state_dir or env.get("PURELB_STATE_DIR")
    if state_dir:
        agent = replace(agent, state_dir=state_dir)
    return AgentDaemonSettings(
        node_name=node,
        namespace=args.namespace or env.get("PURELB_NAMESPACE") or DEFAULT_NAMESPACE,
        metrics_host=host,
        metrics_port=port,
        netns=args.netns,
        gossip_bind=parse_address(bind_text, default_port=DEFAULT_GOSSIP_PORT),
        gossip_advertise=parse_address(args.gossip_advertise, default_port=DEFAULT_GOSSIP_PORT)
        if args.gossip_advertise else None,
        gossip_seeds=tuple(parse_address(s, default_port=DEFAULT_GOSSIP_PORT)
                           for s in seeds_text),
        cluster=args.cluster_name or env.get("PURELB_CLUSTER_NAME") or DEFAULT_CLUSTER,
        key_secret=args.gossip_key_secret or env.get("PURELB_GOSSIP_KEY_SECRET")
        or DEFAULT_KEY_SECRET,
        gossip_timings=_tuned_timings(args),
        resync_s=resync,
        agent=agent,
    )


def _tuned_timings(args: argparse.Namespace) -> GossipTimings:
    """The chosen preset with the failover-tuning flags applied (validated by GossipTimings)."""
    timings = _TIMINGS[args.gossip_timings]()
    changes: dict[str, float] = {}
    if args.gossip_probe_interval is not None:
        if args.gossip_probe_interval <= 0:
            raise ConfigError("--gossip-probe-interval must be > 0 seconds",
                              path="gossip-probe-interval", value=args.gossip_probe_interval)
        scale = args.gossip_probe_interval / timings.probe_interval_s
        changes["probe_interval_s"] = args.gossip_probe_interval
        changes["probe_timeout_s"] = timings.probe_timeout_s * scale
    if args.gossip_suspicion_mult is not None:
        changes["suspicion_mult"] = args.gossip_suspicion_mult
    return dataclasses.replace(timings, **changes) if changes else timings


async def serve(args: argparse.Namespace, settings: AgentDaemonSettings) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    await run_until_signal(
        args, "lbnodeagent", lambda client: AgentDaemon(client, settings),
        lambda d: f"node={settings.node_name} metrics_port={d.metrics_port}")


def run(args: argparse.Namespace) -> int:
    return run_command("purelb agent", args, settings_from_args, serve)
