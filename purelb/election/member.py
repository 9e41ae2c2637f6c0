"""Run one gossip member as a process: ``python -m purelb.election.member ...``.

Used by the namespace tests and ``purelb bench gossip`` (one real process per simulated
node) and handy for trying the protocol by hand. It prints one JSON object per line on
stdout, so a harness can follow it:

    {"event": "started", "name": ..., "addr": ..., "incarnation": ...}
    {"event": "member", "kind": "dead", "member": "b", "state": "DEAD", "incarnation": ...}
                          (kind "present": already known when the runner subscribed)
    {"event": "stats", ...MemberStatistics...}          every --report-interval seconds
    {"event": "left"}                                     after SIGTERM's graceful leave

Signals: SIGTERM/SIGINT leave gracefully and exit 0; SIGHUP reloads the keyring file (a
JSON object shaped like a Kubernetes Secret's ``data``: name -> base64 secret, optional
``primary``); SIGUSR1 prints a stats line at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import signal
import sys
from pathlib import Path

import trio

from ._crypto import Keyring, parse_secret_data
from ._member import Member, MemberConfig, serve_member
from ._seeds import parse_address
from ._subnets import serving_subnets
from ._timings import DEFAULT_LIMITS, lan, local
from ._wire import DEFAULT_PORT, MemberMeta, Subnet
from .interfaces import read_interface_addresses

_PRESETS = {"lan": lan, "local": local}


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def load_keyring(path: Path) -> Keyring:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of name -> base64 secret")
    return parse_secret_data(data)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m purelb.election.member",
                                description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="node name")
    p.add_argument("--bind", required=True, help=f"HOST[:PORT] (default port {DEFAULT_PORT})")
    p.add_argument("--advertise", help="address others reach us at, if not --bind")
    p.add_argument("--cluster", required=True, help="cluster name bound into every datagram")
    p.add_argument("--keyring-file", required=True, type=Path,
                   help="JSON Secret data (name -> base64); SIGHUP reloads it")
    p.add_argument("--seed", action="append", default=[], help="seed address (repeatable)")
    p.add_argument("--subnet", action="append", default=[], help="servable CIDR (repeatable)")
    p.add_argument("--subnets-from", action="append", default=[], metavar="IFNAME",
                   help="also advertise the subnets of this interface (repeatable; netlink)")
    p.add_argument("--not-ready", action="store_true", help="advertise ready=false")
    p.add_argument("--timings", choices=sorted(_PRESETS), default="lan")
    p.add_argument("--report-interval", type=float, default=1.0,
                   help="seconds between stats lines (0: only on SIGUSR1 and exit)")
    p.add_argument("--log-level", default="WARNING")
    return p


def _stats(member: Member) -> dict[str, object]:
    return {"event": "stats", **dataclasses.asdict(member.statistics())}


def _subnets(args: argparse.Namespace) -> tuple[Subnet, ...]:
    configured = [ipaddress.ip_network(s) for s in args.subnet]
    if not args.subnets_from:
        return tuple(configured)
    found = serving_subnets(read_interface_addresses(args.subnets_from),
                            limit=DEFAULT_LIMITS.max_subnets)
    return tuple(dict.fromkeys([*configured, *found]))


async def _run(args: argparse.Namespace, subnets: tuple[Subnet, ...]) -> int:
    config = MemberConfig(
        name=args.name,
        bind=parse_address(args.bind, default_port=DEFAULT_PORT),
        advertise=parse_address(args.advertise, default_port=DEFAULT_PORT)
        if args.advertise else None,
        cluster=args.cluster,
        keyring=load_keyring(args.keyring_file),
        seeds=tuple(parse_address(s, default_port=DEFAULT_PORT) for s in args.seed),
        meta=MemberMeta(subnets=subnets, ready=not args.not_ready),
        timings=_PRESETS[args.timings](),
    )
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                   signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            member: Member = await nursery.start(serve_member, config)
            _emit({"event": "started", "name": config.name, "addr": str(member.address),
                   "incarnation": member.statistics().incarnation,
                   "subnets": [str(n) for n in subnets]})
            nursery.start_soon(_follow, member)
            if args.report_interval > 0:
                nursery.start_soon(_report, member, args.report_interval)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:
                        member.set_keyring(load_keyring(args.keyring_file))
                        _emit({"event": "keyring", "keyring": repr(member.keyring)})
                    except (OSError, ValueError) as exc:
                        _emit({"event": "keyring_error", "error": str(exc)})
                elif signum == signal.SIGUSR1:
                    _emit(_stats(member))
                else:
                    await member.leave()
                    _emit(_stats(member))
                    _emit({"event": "left"})
                    nursery.cancel_scope.cancel(reason="left after SIGTERM")
                    break
    return 0


async def _follow(member: Member) -> None:
    async with member.subscribe(max_buffer=4096) as events:
        # Members that joined before we subscribed: reported first, as "present". No
        # checkpoint separates subscribing from this snapshot, so nothing falls in between.
        for m in member.members():
            if m.name != member.name:
                _emit({"event": "member", "kind": "present", "member": m.name,
                       "state": m.state.name, "incarnation": m.incarnation})
        async for ev in events:
            _emit({"event": "member", "kind": ev.kind.value, "member": ev.member.name,
                   "state": ev.member.state.name, "incarnation": ev.member.incarnation})


async def _report(member: Member, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        _emit(_stats(member))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    subnets = _subnets(args)  # netlink is blocking: read it before the Trio loop starts
    return trio.run(_run, args, subnets)


if __name__ == "__main__":
    sys.exit(main())
