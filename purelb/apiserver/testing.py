"""An API server for tests: ``async with open_test_apiserver() as srv: ...``.

The server runs as a task of a nursery this context manager opens, on 127.0.0.1 with a
free port, with a kubeconfig in a temporary directory. ``srv.faults`` switches on injected
faults; ``srv.store.compact(keep=0)`` drops watch history so older resourceVersions get
410 Gone; ``srv.server`` is the :class:`ApiServer` (audit records, registry, objects).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import trio

from ._api import ApiSettings
from ._faults import FaultInjector
from ._kubeconfig import write_kubeconfig
from ._server import ApiServer, ApiServerConfig, serve_apiserver
from ._store import Store
from ._tls import make_self_signed

TEST_TOKEN = "purelb-test-token"
"""The bearer token of ``tls=True`` servers when the caller gives none."""
TEST_BOOKMARK_INTERVAL_S = 1.0
"""Tests should not wait the real server's minute for a bookmark."""


@dataclass(frozen=True, slots=True)
class TestApiServer:
    """Handles on a running test server."""

    __test__ = False  # not a pytest test class despite the name
    url: str
    kubeconfig: Path
    faults: FaultInjector
    store: Store
    server: ApiServer
    port: int
    tmpdir: Path


@asynccontextmanager
async def open_test_apiserver(
    storage: Literal["memory", "sqlite"] = "memory",
    db_path: Path | str | None = None,
    crd_paths: Iterable[Path | str] = (),
    *,
    tokens: dict[str, str] | None = None,
    api: ApiSettings | None = None,
    history_limit: int | None = None,
    tls: bool = False,
) -> AsyncIterator[TestApiServer]:
    """Run a server for the duration of the block (see module docstring).

    ``tls=True`` serves HTTPS with a fresh self-signed CA (``tmpdir/ca.crt``, also in the
    kubeconfig) and requires a bearer token (``tokens``, default one token for "admin").
    """
    if storage not in ("memory", "sqlite"):
        raise ValueError(f'storage must be "memory" or "sqlite", got {storage!r}')
    with tempfile.TemporaryDirectory(prefix="purelb-api-") as tmp:
        tmpdir = Path(tmp)
        if storage == "sqlite" and db_path is None:
            db_path = tmpdir / "state.db"
        kw: dict[str, Any] = {} if history_limit is None else {"history_limit": history_limit}
        ca_pem: bytes | None = None
        if tls:
            cert, key, ca_pem = make_self_signed(tmpdir, "127.0.0.1")
            kw.update(tls_cert=cert, tls_key=key)
            tokens = tokens or {TEST_TOKEN: "admin"}
        cfg = ApiServerConfig(
            host="127.0.0.1",
            port=0,
            db_path=Path(db_path) if storage == "sqlite" and db_path is not None else None,
            crd_paths=tuple(Path(p) for p in crd_paths),
            tokens=dict(tokens or {}),
            api=api or ApiSettings(bookmark_interval_s=TEST_BOOKMARK_INTERVAL_S),
            **kw,
        )
        server = ApiServer(cfg)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_apiserver, cfg, server=server))
            url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
            token = next(iter(cfg.tokens), None)
            kubeconfig = write_kubeconfig(tmpdir / "kubeconfig", server=url, token=token,
                                          ca_pem=ca_pem)
            try:
                yield TestApiServer(url, kubeconfig, server.faults, server.store, server, port,
                                    tmpdir)
            finally:
                nursery.cancel_scope.cancel()
