"""One coordination.k8s.io/v1 Lease object as the storage of leader election.

The election *rule* lives in one place, :class:`purelb.controllers.leadership.Elector`
(it measures expiry on the local monotonic clock, so clock skew between replicas does not
matter). This module is only its storage adapter: :class:`LeaseObject` implements the
three-method ``LeaseApi`` protocol ``run_election`` drives — read the Lease, create it, and
replace it with a ``resourceVersion`` precondition. The precondition is what makes two
contenders safe: the loser of a race gets :class:`Conflict` (or :class:`AlreadyExists`
on create), which the election loop treats as "not won this round".
"""

from __future__ import annotations

from typing import Any

from ._client import KubeClient
from ._errors import NotFound
from ._resources import LEASES

JSON = dict[str, Any]


class LeaseObject:
    """The Lease ``namespace/name`` seen through ``client`` (a ``LeaseApi``)."""

    def __init__(self, client: KubeClient, *, name: str, namespace: str) -> None:
        if not name or not namespace:
            raise ValueError(f"a Lease needs a name and a namespace, got {namespace!r}/{name!r}")
        self._client = client
        self.name = name
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"LeaseObject({self.namespace}/{self.name})"

    async def get(self) -> JSON | None:
        """The Lease as stored, or ``None`` if it does not exist."""
        try:
            return await self._client.get(LEASES, self.name, namespace=self.namespace)
        except NotFound:
            return None

    async def create(self, spec: JSON) -> JSON:
        """Create the Lease with ``spec``; :class:`AlreadyExists` if someone was faster."""
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        return await self._client.create(LEASES, body, namespace=self.namespace)

    async def replace(self, spec: JSON, resource_version: str) -> JSON:
        """Compare-and-swap: write ``spec`` only if the Lease is still at ``resource_version``.

        Raises :class:`Conflict` when it changed since it was read.
        """
        if not resource_version:
            raise ValueError(f"{self!r}: replace needs the resourceVersion that was read")
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": resource_version},
                "spec": spec}
        return await self._client.replace(LEASES, body, namespace=self.namespace)
