"""Command-line options every role shares for reaching the API: one place, same names.

``purelb allocator``, ``purelb agent`` and ``purelb status`` call
:func:`add_kube_arguments` in their ``add_arguments`` and :func:`client_from_args` in
``run``, so ``--kubeconfig``/``--context``/rate-limit flags mean the same everywhere.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ._client import DEFAULT_CLIENT_SETTINGS, ClientSettings, KubeClient
from ._config import ClusterConfig, load_config
from ._ratelimit import RateLimitSettings


def add_kube_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--kubeconfig``, ``--context``, ``--kube-qps``, ``--kube-burst``."""
    group = parser.add_argument_group("Kubernetes API")
    group.add_argument("--kubeconfig", metavar="PATH", default=None,
                       help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    group.add_argument("--context", default=None, help="kubeconfig context to use")
    group.add_argument("--kube-qps", type=float,
                       default=DEFAULT_CLIENT_SETTINGS.rate_limit.qps
                       if DEFAULT_CLIENT_SETTINGS.rate_limit else 0.0,
                       help="client-side request rate limit; 0 turns it off")
    group.add_argument("--kube-burst", type=int,
                       default=DEFAULT_CLIENT_SETTINGS.rate_limit.burst
                       if DEFAULT_CLIENT_SETTINGS.rate_limit else 1,
                       help="requests allowed in a burst above --kube-qps")


def config_from_args(args: argparse.Namespace) -> ClusterConfig:
    """Resolve the cluster config from parsed arguments (raises ``ConfigError``)."""
    return load_config(kubeconfig=args.kubeconfig, context=args.context)


def settings_from_args(args: argparse.Namespace) -> ClientSettings:
    """Client settings with the rate limit taken from the arguments."""
    rate = None if args.kube_qps <= 0 else RateLimitSettings(qps=args.kube_qps,
                                                             burst=args.kube_burst)
    return replace(DEFAULT_CLIENT_SETTINGS, rate_limit=rate)


def client_from_args(args: argparse.Namespace, *, role: str) -> KubeClient:
    """A ready-to-enter :class:`KubeClient` for ``role`` from parsed arguments."""
    return KubeClient(config_from_args(args), role=role, settings=settings_from_args(args))
