"""How the allocator's decisions reach the API: a small :class:`Writer` protocol.

The reconcile logic depends on these five operations only, so it is tested with a fake
writer and runs unchanged against a cluster. :class:`KubeWriter` is the real one:

* annotations by **merge patch** (only our keys; ``null`` removes one);
* ``status.loadBalancer.ingress`` by **merge patch on /status** carrying the
  resourceVersion the decision was computed from, so a concurrent change is a 409
  (:class:`Conflict`) and the caller re-reads, recomputes and writes again — never a
  blind overwrite (and other status fields are left alone);
* Events through the series-aggregating :class:`EventRecorder` (best effort);
* ServiceGroup status by merge patch on /status.

**Fencing.** Every write first asks ``fence()`` (the elector's ``is_leader``); a replica
that is not (or no longer) the leader raises :class:`NotLeader` instead of writing, so a
leader that cannot renew stops writing before its lease can be taken over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from purelb.errors import PurelbError
from purelb.ipam.decision import Event
from purelb.kube import (
    SERVICE_GROUPS,
    SERVICES,
    EventRecorder,
    EventType,
    KubeApiError,
    KubeClient,
    NotFound,
    PatchType,
)

JSON = dict[str, Any]


class NotLeader(PurelbError):
    """A write was refused locally because this replica does not hold the lease."""


class Writer(Protocol):
    """Everything the allocator writes (see module docstring)."""

    async def patch_annotations(self, svc: JSON, set_: Mapping[str, str],
                                remove: Sequence[str]) -> JSON: ...
    async def write_ingress(self, svc: JSON, ingress: list[JSON]) -> JSON: ...
    async def read_service(self, namespace: str, name: str) -> JSON | None: ...
    async def emit(self, regarding: JSON, event: Event, *, action: str) -> None: ...
    async def write_group_status(self, group: JSON, status: JSON) -> None: ...


class WriteCounters(Protocol):
    """Where :class:`KubeWriter` reports each write (the metrics object)."""

    def write_done(self, kind: str, ok: bool) -> None: ...


def service_reference(svc: Mapping[str, Any]) -> JSON:
    """The object an Event regards: list items carry no kind/apiVersion, so add them."""
    meta = svc.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")
                         if k in meta}}


class KubeWriter:
    """:class:`Writer` over a :class:`KubeClient`, fenced by ``fence``."""

    def __init__(self, client: KubeClient, recorder: EventRecorder, *,
                 fence: Callable[[], bool], counters: WriteCounters) -> None:
        self._client = client
        self._recorder = recorder
        self._fence = fence
        self._counters = counters

    def __repr__(self) -> str:
        return f"KubeWriter({self._client!r})"

    async def _counted(self, kind: str, write: Awaitable[JSON]) -> JSON:
        """Await ``write``, reporting it to the counters as ``kind``, ok or failed."""
        try:
            out = await write
        except KubeApiError:
            self._counters.write_done(kind, False)
            raise
        self._counters.write_done(kind, True)
        return out

    def _check_fence(self, what: str) -> None:
        if not self._fence():
            raise NotLeader(f"not the leader: refusing to {what}")

    async def patch_annotations(self, svc: JSON, set_: Mapping[str, str],
                                remove: Sequence[str]) -> JSON:
        meta = svc["metadata"]
        self._check_fence(f"patch annotations of {meta['namespace']}/{meta['name']}")
        patch: dict[str, Any] = dict(set_)
        patch.update(dict.fromkeys(remove))
        # the resourceVersion makes the patch a compare-and-set (409 if the Service moved
        # on since the decision was computed from it)
        body = {"metadata": {"annotations": patch, "resourceVersion": meta["resourceVersion"]}}
        return await self._counted("annotations", self._client.patch(
            SERVICES, meta["name"], body, namespace=meta["namespace"],
            patch_type=PatchType.MERGE))

    async def write_ingress(self, svc: JSON, ingress: list[JSON]) -> JSON:
        meta = svc["metadata"]
        self._check_fence(f"write the ingress of {meta['namespace']}/{meta['name']}")
        # A merge patch of /status touches only loadBalancer (status.conditions written by
        # others survive, and the cache may hold a slimmed copy); the resourceVersion makes
        # it a compare-and-set: 409 if the Service changed since the decision read it.
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]},
                "status": {"loadBalancer": {"ingress": ingress}}}
        return await self._counted("status", self._client.patch_status(
            SERVICES, meta["name"], body, namespace=meta["namespace"],
            patch_type=PatchType.MERGE))

    async def read_service(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self._client.get(SERVICES, name, namespace=namespace)
        except NotFound:
            return None

    async def emit(self, regarding: JSON, event: Event, *, action: str) -> None:
        self._check_fence(f"record event {event.reason}")
        await self._recorder.emit(service_reference(regarding), type=EventType(event.type.value),
                                  reason=event.reason, action=action, note=event.message)

    async def write_group_status(self, group: JSON, status: JSON) -> None:
        meta = group["metadata"]
        self._check_fence(f"write the status of ServiceGroup {meta['name']}")
        await self._counted("group_status", self._client.patch_status(
            SERVICE_GROUPS, meta["name"], {"status": status}, namespace=meta["namespace"],
            patch_type=PatchType.MERGE))
