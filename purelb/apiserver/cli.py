"""``purelb apiserver``: run the Kubernetes-compatible API server.

Off loopback it always serves HTTPS with bearer-token auth: ``--tls-cert/--tls-key``, or a
self-signed CA and server certificate generated next to ``--kubeconfig-out`` (or in the
``--db`` directory), and a random token unless ``--token`` is given. The kubeconfig written
with ``--kubeconfig-out`` (mode 0600) carries the CA and the token.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from functools import partial
from pathlib import Path

import trio

from purelb.errors import ConfigError
from purelb.heap import tune_gc

from ._kubeconfig import write_kubeconfig
from ._server import ApiServer, ApiServerConfig, serve_apiserver
from ._tls import load_or_make_token

LOG = logging.getLogger(__name__)
DEFAULT_USER = "admin"
TOKEN_FILE = "token"
"""Generated tokens are kept here (mode 0600) so a restart keeps old kubeconfigs working."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:6443", metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:6443; port 0 = any)")
    parser.add_argument("--db", type=Path, default=None, metavar="FILE",
                        help="SQLite file for durable state (default: in memory)")
    parser.add_argument("--kubeconfig-out", type=Path, default=None, metavar="FILE",
                        help="write a kubeconfig for this server here (mode 0600)")
    parser.add_argument("--crd", type=Path, action="extend", nargs="+", default=[],
                        metavar="PATH",
                        help="install the CRDs in these YAML files or directories")
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="FILE")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="FILE")
    parser.add_argument("--token", default=None,
                        help="bearer token clients must send (generated when TLS is on)")
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS even on loopback (self-signed unless --tls-cert)")
    parser.add_argument("--log-level", default="INFO")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen {text!r} must be HOST:PORT", path="listen", value=text)
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"--listen {text!r}: host {host!r} must be an IP address", path="listen",
                          value=text) from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def build_config(args: argparse.Namespace) -> tuple[ApiServerConfig, bytes | None, str | None]:
    """The server config, the CA to trust (if self-signed) and the token (if any)."""
    host, port = parse_listen(args.listen)
    tls = args.tls or not is_loopback(host) or args.tls_cert is not None
    cert, key, ca_pem = args.tls_cert, args.tls_key, None
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together", path="tls_cert", value=cert)
    state_dir: Path | None = None
    if tls and (args.kubeconfig_out or args.db):
        state_dir = (args.kubeconfig_out or args.db).resolve().parent
    if tls and cert is None:
        from ._tls import load_or_make_self_signed

        if state_dir is None:
            raise ConfigError(
                f"--listen {args.listen} serves HTTPS with a generated CA and token: give "
                "--kubeconfig-out FILE (or --db FILE) so they are written somewhere, or "
                "--tls-cert/--tls-key and --token", path="kubeconfig_out", value=None)
        cert, key, ca_pem = load_or_make_self_signed(state_dir, host)
    token = args.token
    if tls and token is None:
        if state_dir is None:
            raise ConfigError("HTTPS needs a bearer token: give --token, or --kubeconfig-out "
                              "FILE to have one generated", path="token", value=None)
        token = load_or_make_token(state_dir / TOKEN_FILE)
    tokens = {token: DEFAULT_USER} if token else {}
    cfg = ApiServerConfig(host=host, port=port, db_path=args.db, crd_paths=tuple(args.crd),
                          tls_cert=cert, tls_key=key, tokens=tokens)
    return cfg, ca_pem, token


async def _main(args: argparse.Namespace) -> None:
    cfg, ca_pem, token = build_config(args)
    server = ApiServer(cfg)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_apiserver, cfg, server=server))
        scheme = "https" if cfg.tls_cert else "http"
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        url = f"{scheme}://{host}:{port}"
        if args.kubeconfig_out is not None:
            write_kubeconfig(args.kubeconfig_out, server=url, token=token, ca_pem=ca_pem)
        print(f"purelb apiserver listening on {url}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                LOG.info("event=shutdown signal=%s", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tune_gc()  # a store of long-lived objects: see purelb.heap
    try:
        trio.run(_main, args)
    except ConfigError as exc:
        print(f"purelb apiserver: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
