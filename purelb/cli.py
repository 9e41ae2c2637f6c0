"""The ``purelb`` command line: one entry point, one subcommand per role.

Each subcommand lives in its own module and is imported only when chosen, so
``purelb bench alloc`` never pays for pyroute2 and ``purelb agent`` never for matplotlib.
A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module implementing it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "allocator": ("purelb.controllers.allocator_cli", "run the cluster-wide address allocator"),
    "agent": ("purelb.controllers.agent_cli", "run the node agent that announces addresses"),
    "embedded": ("purelb.controllers.embedded_cli", "one process: API server, allocator and agent"),
    "apiserver": ("purelb.apiserver.cli", "run the Kubernetes-compatible API server"),
    "status": ("purelb.status_cli", "show groups, services and gossip members"),
    "bench": ("bench.cli", "run a benchmark (alloc, api, e2e, ...)"),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` just that subcommand's module imported (so a daemon
    does not carry every other role's imports: ``purelb allocator`` would load pyroute2)."""
    parser = argparse.ArgumentParser(prog="purelb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        module = _load(module_name)
        if module is None:
            continue  # not built yet in this version
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
