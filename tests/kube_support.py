"""Helpers for the kube client/reflector integration tests (real API server on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from purelb.kube import (
    Change,
    ChangeKind,
    ClientSettings,
    KubeClient,
    Resource,
    load_kubeconfig,
)

#: How long an integration test waits for convergence on loopback before failing.
CONVERGE_TIMEOUT_S = 20.0
#: Poll period while waiting for a condition that spans the server and the client.
POLL_S = 0.02

FAST = ClientSettings(rate_limit=None, connect_timeout_s=5.0, request_timeout_s=10.0)


@asynccontextmanager
async def open_client(srv: Any, *, role: str = "test",
                      settings: ClientSettings = FAST) -> AsyncIterator[KubeClient]:
    cfg = load_kubeconfig([Path(srv.kubeconfig)])
    async with KubeClient(cfg, role=role, settings=settings) as client:
        yield client


async def eventually(condition: Callable[[], bool], *, what: str,
                     timeout_s: float = CONVERGE_TIMEOUT_S) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - the condition spans server and client
            await trio.sleep(POLL_S)
        return
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def versions(objs) -> dict[tuple[str, str], str]:
    return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]):
            o["metadata"]["resourceVersion"] for o in objs}


class Mirror:
    """A consumer that rebuilds the server state from Change events alone."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], str] = {}
        self.deleted: set[tuple[str, str]] = set()
        self.log: list[tuple[ChangeKind, str]] = []

    async def consume(self, receive: trio.MemoryReceiveChannel[Change]) -> None:
        async with receive:
            async for kind, obj in receive:
                meta = obj["metadata"]
                key = (meta.get("namespace", ""), meta["name"])
                self.log.append((kind, meta["name"]))
                if kind is ChangeKind.DELETED:
                    self.state.pop(key, None)
                    self.deleted.add(key)
                else:
                    self.state[key] = meta["resourceVersion"]


async def truth(client: KubeClient, resource: Resource, namespace: str | None
                ) -> dict[tuple[str, str], str]:
    items, _ = await client.list_all(resource, namespace=namespace)
    return versions(items)
