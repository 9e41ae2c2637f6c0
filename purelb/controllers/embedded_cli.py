"""``purelb embedded``: flags -> :class:`EmbeddedSettings` -> one gateway process.

Prints one line ``purelb embedded ready: api=URL kubeconfig=PATH agent=KIND`` on stdout
once the API serves, the manifests are applied and every daemon has synced (scripts and
tests wait for it). SIGTERM/SIGINT cancel the nursery: the agent withdraws its addresses
on the way out.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from pathlib import Path

import trio

from purelb.apiserver.cli import parse_listen
from purelb.controllers.embedded import (
    DEFAULT_NAMESPACE,
    DEFAULT_STATE_DIR,
    EmbeddedGateway,
    EmbeddedSettings,
    default_crd_dir,
)
from purelb.errors import ConfigError, PurelbError
from purelb.heap import tune_gc
from purelb.obs import configure_logging

LOGGER = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, action="extend", nargs="+", default=[],
                        metavar="FILE_OR_DIR",
                        help="manifests applied at start (ServiceGroups, an LBNodeAgent, "
                             "Services); re-running with the same files changes nothing")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                        help=f"SQLite state, credentials and DIR/kubeconfig "
                             f"(default {DEFAULT_STATE_DIR})")
    parser.add_argument("--listen", default="127.0.0.1:6443", metavar="ADDR:PORT",
                        help="API address (default 127.0.0.1:6443; off loopback only with "
                             "TLS and a bearer token, generated on first start)")
    parser.add_argument("--no-netlink", action="store_true",
                        help="allocate and plan, touch no interface (runs without root)")
    parser.add_argument("--node-name", default=None,
                        help="this gateway's node name (default: the hostname)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                        help=f"install namespace of ServiceGroups (default {DEFAULT_NAMESPACE})")
    parser.add_argument("--crd", type=Path, action="extend", nargs="+", default=None,
                        metavar="PATH", help=f"CRD files or directories (default "
                                             f"{default_crd_dir()})")
    g = parser.add_argument_group("gossip (a site with several gateways; off by default)")
    g.add_argument("--gossip-bind", default=None, metavar="HOST[:PORT]",
                   help="this gateway's gossip address (turns gossip on)")
    g.add_argument("--gossip-peer", action="append", default=[], metavar="HOST[:PORT]",
                   help="another gateway of the site (repeatable); needs the same gossip key "
                        "Secret (purelb-gossip) in every gateway's --config")
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="FILE")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="FILE")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error")
    parser.add_argument("--log-format", choices=("text", "json"), default=None)


def settings_from_args(args: argparse.Namespace) -> EmbeddedSettings:
    host, port = parse_listen(args.listen)
    extra = {"crd_paths": tuple(args.crd)} if args.crd else {}
    return EmbeddedSettings(
        state_dir=args.state_dir, host=host, port=port, config_paths=tuple(args.config),
        netlink=not args.no_netlink, node_name=args.node_name or socket.gethostname(),
        namespace=args.namespace, tls_cert=args.tls_cert, tls_key=args.tls_key,
        gossip_bind=args.gossip_bind, gossip_peers=tuple(args.gossip_peer), **extra)


async def serve(settings: EmbeddedSettings) -> None:
    gateway = EmbeddedGateway(settings)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(gateway.run)
            print(f"purelb embedded ready: api={info.url} kubeconfig={info.kubeconfig} "
                  f"agent={info.agent}", flush=True)
            async for signum in signals:
                LOGGER.info("event=shutdown signal=%s", signal.Signals(signum).name)
                nursery.cancel_scope.cancel(reason=f"signal {signal.Signals(signum).name}")
                break


def run(args: argparse.Namespace) -> int:
    try:
        configure_logging(args.log_level, args.log_format)
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
        settings = settings_from_args(args)
        tune_gc()  # API server, allocator and agent in one process: see purelb.heap
        trio.run(serve, settings)
    except (ConfigError, PurelbError, PermissionError, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        if not all(isinstance(e, (ConfigError, PurelbError, PermissionError)) for e in leaves):
            raise  # a bug: keep the traceback
        for leaf in leaves:
            print(f"purelb embedded: {leaf}", file=sys.stderr)
        return 2
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]
