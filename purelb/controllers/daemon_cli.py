"""What every daemon's command does around its daemon: logging, config errors, signals.

``purelb allocator`` and ``purelb agent`` differ only in their flags and their daemon
class; this module holds the shared shell so both stop the same way on SIGTERM/SIGINT
(cancel the nursery: the daemon's own shielded cleanup runs) and report bad configuration
the same way (one line naming the problem, exit status 2).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import trio

from purelb.errors import ConfigError
from purelb.heap import tune_gc
from purelb.kube import client_from_args
from purelb.obs import configure_logging

LOGGER = logging.getLogger(__name__)
S = TypeVar("S")

#: exit status for configuration errors (argparse uses the same for bad flags)
EXIT_CONFIG_ERROR = 2


class Daemon(Protocol):
    metrics_port: int

    async def run(self, *, task_status: trio.TaskStatus[Any] = ...) -> None: ...


async def run_until_signal(
    args: argparse.Namespace,
    role: str,
    make_daemon: Callable[[Any], Daemon],
    ready_fields: Callable[[Daemon], str],
) -> None:
    """Start the daemon with a client for ``role`` and run it until SIGTERM or SIGINT."""
    async with client_from_args(args, role=role) as client:
        daemon = make_daemon(client)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                LOGGER.info("event=%s_ready %s", role, ready_fields(daemon))
                async for signum in signals:
                    name = signal.Signals(signum).name
                    LOGGER.info("event=shutdown signal=%s", name)
                    nursery.cancel_scope.cancel(reason=f"signal {name}")
                    break


def run_command(
    command: str,
    args: argparse.Namespace,
    settings_from_args: Callable[[argparse.Namespace], S],
    serve: Callable[[argparse.Namespace, S], Awaitable[None]],
) -> int:
    """Configure logging, build the settings, run ``serve``; config errors exit 2."""
    try:
        configure_logging(args.log_level, args.log_format)
        # one line per HTTP request is noise at info; our own logs name every failure
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
        settings = settings_from_args(args)
    except (ConfigError, ValueError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    tune_gc()
    try:
        trio.run(serve, args, settings)
    except ConfigError as exc:  # found at start-up, e.g. an unusable kubeconfig
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return 0
