"""``purelb bench NAME``: dispatch to one benchmark module (``bench/<name>.py``).

A benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib

#: benchmark name -> (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "alloc": ("bench.alloc", "pool allocation and election: native vs fallback vs reference"),
    "api": ("bench.api", "API server writes/s and watch fan-out"),
    "gossip": ("bench.gossip", "gossip failure detection and bandwidth"),
    "e2e": ("bench.e2e", "allocator end to end: create -> ingress written"),
    "agent": ("bench.agent", "agent: create -> address, failover, netlink ops/s"),
    "ipam": ("bench.ipam", "allocator: fill, parse and startup import of 100,000 Services"),
    "netbox": ("bench.netbox", "NetBox IPAM: allocation latency per address (real NetBox)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not written yet
            raise
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        sp.set_defaults(_bench=module)


def run(args: argparse.Namespace) -> int:
    return int(args._bench.run(args) or 0)
