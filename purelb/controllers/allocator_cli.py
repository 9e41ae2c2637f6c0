"""``purelb allocator``: flags and environment -> :class:`DaemonSettings` -> the daemon.

Every flag has an environment twin (PureLB's names where PureLB has them) so a Deployment
can configure it either way; a flag given on the command line wins. SIGTERM and SIGINT
cancel the daemon's nursery: the leader gives its Lease up on the way out, so a standby
takes over at once instead of after the lease duration.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace

from purelb.controllers.allocator import (
    DEFAULT_LEASE_NAME,
    DEFAULT_METRICS_PORT,
    DEFAULT_NAMESPACE,
    AllocatorDaemon,
    DaemonSettings,
    default_identity,
    lease_timings,
)
from purelb.controllers.daemon_cli import run_command, run_until_signal
from purelb.controllers.leadership import LeaseTimings
from purelb.errors import ConfigError
from purelb.ipam.allocator import AllocatorSettings
from purelb.kube import add_kube_arguments

LOGGER = logging.getLogger(__name__)

_LEASE = LeaseTimings()
#: how a boolean environment variable may be spelled
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"${name}={raw!r} is not a boolean (use true or false)", path=name,
                      value=raw)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw.rstrip("s"))
    except ValueError:
        raise ConfigError(f"${name}={raw!r} is not a number of seconds", path=name,
                          value=raw) from None


def _default_announcer_env() -> bool:
    # PureLB: DEFAULT_ANNOUNCER=PureLB turns it on; we default to on, and accept booleans
    raw = os.environ.get("DEFAULT_ANNOUNCER")
    if raw is not None and raw.lower() == "purelb":
        return True
    return _env_bool("PURELB_DEFAULT_ANNOUNCER", True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kube_arguments(parser)
    parser.add_argument("--namespace", default=None,
                        help="install namespace holding ServiceGroups and the Lease "
                             f"($PURELB_NAMESPACE, else {DEFAULT_NAMESPACE})")
    parser.add_argument("--host", default=None,
                        help="bind address of /metrics /healthz /readyz ($PURELB_HOST, 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"metrics port ($PURELB_PORT, {DEFAULT_METRICS_PORT}; 0 = any)")
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=None,
                        help="hold a Lease before writing ($PURELB_LEADER_ELECT, default on)")
    parser.add_argument("--lease-name", default=None,
                        help=f"Lease name ($PURELB_LEASE_NAME, {DEFAULT_LEASE_NAME})")
    parser.add_argument("--lease-duration", type=float, default=None, metavar="SECONDS",
                        help="worst-case failover time ($PURELB_LEASE_DURATION, "
                             f"{_LEASE.lease_duration_s:g})")
    parser.add_argument("--renew-deadline", type=float, default=None, metavar="SECONDS",
                        help="a leader that cannot renew this long stops writing "
                             f"($PURELB_RENEW_DEADLINE, {_LEASE.renew_deadline_s:g})")
    parser.add_argument("--retry-period", type=float, default=None, metavar="SECONDS",
                        help="between lease attempts ($PURELB_RETRY_PERIOD, "
                             f"{_LEASE.retry_period_s:g})")
    parser.add_argument("--identity", default=None,
                        help="name in the Lease and Events ($POD_NAME, else hostname_random)")
    parser.add_argument("--default-announcer", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="also handle Services without spec.loadBalancerClass "
                             "($PURELB_DEFAULT_ANNOUNCER / DEFAULT_ANNOUNCER=PureLB, default on)")
    parser.add_argument("--workers", type=int, default=None,
                        help="concurrent reconciles ($PURELB_WORKERS, 16)")
    parser.add_argument("--resync-period", type=float, default=None, metavar="SECONDS",
                        help="reconcile every Service again this often ($PURELB_RESYNC_PERIOD, "
                             "600)")
    parser.add_argument("--log-level", default=None,
                        help="debug, info, warning, error ($PURELB_LOG_LEVEL, info)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="log line format ($PURELB_LOG_FORMAT, text)")


def settings_from_args(args: argparse.Namespace) -> DaemonSettings:
    """Resolve flags, then environment, then defaults (raises ``ConfigError``)."""
    env = os.environ
    base = DaemonSettings(identity=args.identity or env.get("POD_NAME") or default_identity())
    leader_elect = (args.leader_elect if args.leader_elect is not None
                    else _env_bool("PURELB_LEADER_ELECT", True))
    default_announcer = (args.default_announcer if args.default_announcer is not None
                         else _default_announcer_env())
    lease = lease_timings(
        args.lease_duration if args.lease_duration is not None
        else _env_float("PURELB_LEASE_DURATION", _LEASE.lease_duration_s),
        args.renew_deadline if args.renew_deadline is not None
        else _env_float("PURELB_RENEW_DEADLINE", _LEASE.renew_deadline_s),
        args.retry_period if args.retry_period is not None
        else _env_float("PURELB_RETRY_PERIOD", _LEASE.retry_period_s))
    port_raw = args.port if args.port is not None else env.get("PURELB_PORT")
    try:
        port = int(port_raw) if port_raw is not None else DEFAULT_METRICS_PORT
    except ValueError:
        raise ConfigError(f"$PURELB_PORT={port_raw!r} is not a port number", path="port",
                          value=port_raw) from None
    workers = args.workers if args.workers is not None else int(env.get("PURELB_WORKERS") or
                                                                base.workers)
    return replace(
        base,
        namespace=args.namespace or env.get("PURELB_NAMESPACE") or DEFAULT_NAMESPACE,
        metrics_host=args.host or env.get("PURELB_HOST") or base.metrics_host,
        metrics_port=port,
        leader_elect=leader_elect,
        lease_name=args.lease_name or env.get("PURELB_LEASE_NAME") or DEFAULT_LEASE_NAME,
        lease=lease,
        workers=workers,
        resync_s=(args.resync_period if args.resync_period is not None
                  else _env_float("PURELB_RESYNC_PERIOD", base.resync_s)),
        allocator=AllocatorSettings(default_announcer=default_announcer),
    )


async def serve(args: argparse.Namespace, settings: DaemonSettings) -> None:
    """Run the allocator until SIGTERM/SIGINT."""
    await run_until_signal(args, "allocator", lambda client: AllocatorDaemon(client, settings),
                           lambda d: f"metrics_port={d.metrics_port}")


def run(args: argparse.Namespace) -> int:
    return run_command("purelb allocator", args, settings_from_args, serve)
