"""What resources the server knows: built-in kinds plus resources that CRDs register.

A :class:`ResourceDef` holds everything discovery, OpenAPI, routing and storage need
about one ``group/version/resource``. Storage is keyed by ``group/resource`` (the
storage key), so every served version of a CRD reads and writes the same objects, the
way a CRD with ``conversion: None`` behaves.

:class:`Registry` is per server instance (no module-level mutable state); it changes only
when a CRD is created, updated or deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._schema import StructuralSchema

ALL_VERBS: tuple[str, ...] = (
    "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
)
SUBRESOURCE_VERBS: tuple[str, ...] = ("get", "patch", "update")

_OBJECT_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceDef:
    """One served ``group/version/plural``."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    field_labels: tuple[str, ...] = _OBJECT_FIELDS
    sets_generation: bool = False
    """Whether metadata.generation is kept (and bumped on spec changes), as for the real type."""
    strategic: bool = True
    """Built-in kinds accept strategic merge patch; custom resources answer 415."""
    printer_columns: tuple[dict[str, Any], ...] = ()
    """CRD additionalPrinterColumns (Name and Age are implicit)."""
    schema: StructuralSchema | None = None
    """CRD openAPIV3Schema (None for built-ins: stored as sent, no pruning)."""
    crd_name: str = ""
    """Name of the CRD that registered this resource ('' for built-ins)."""
    create_on_update: bool = False
    """A PUT of a missing object creates it (the real type's AllowCreateOnUpdate)."""
    unconditional_update: bool = True
    """A PUT may omit metadata.resourceVersion (AllowUnconditionalUpdate); false for
    custom resources and CRDs, whose PUTs must name the version they replace."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def __repr__(self) -> str:
        return f"ResourceDef({self.api_version} {self.plural})"


def _core(plural: str, kind: str, *, namespaced: bool = True, **kw: Any) -> ResourceDef:
    return ResourceDef(
        group="", version="v1", plural=plural, singular=kind.lower(), kind=kind,
        namespaced=namespaced, **kw,
    )


def _g(group: str, version: str, plural: str, kind: str, **kw: Any) -> ResourceDef:
    kw.setdefault("namespaced", True)
    return ResourceDef(
        group=group, version=version, plural=plural, singular=kind.lower(), kind=kind, **kw
    )


_STATUS = frozenset({"status"})

#: the built-in resources this server serves (issue 3's list), with the real short
#: names, categories and field labels.
BUILTINS: tuple[ResourceDef, ...] = (
    _core("namespaces", "Namespace", namespaced=False, short_names=("ns",),
          subresources=_STATUS, field_labels=(*_OBJECT_FIELDS, "status.phase")),
    _core("nodes", "Node", namespaced=False, short_names=("no",), subresources=_STATUS,
          field_labels=(*_OBJECT_FIELDS, "spec.unschedulable")),
    _core("pods", "Pod", short_names=("po",), categories=("all",), subresources=_STATUS,
          field_labels=(*_OBJECT_FIELDS, "spec.nodeName", "spec.restartPolicy",
                        "spec.schedulerName", "spec.serviceAccountName", "status.phase",
                        "status.podIP", "status.nominatedNodeName")),
    _core("services", "Service", short_names=("svc",), categories=("all",),
          subresources=_STATUS, sets_generation=True, create_on_update=True,
          field_labels=(*_OBJECT_FIELDS, "spec.clusterIP", "spec.type")),
    _core("endpoints", "Endpoints", short_names=("ep",), create_on_update=True),
    _core("secrets", "Secret", field_labels=(*_OBJECT_FIELDS, "type")),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("events", "Event", short_names=("ev",), create_on_update=True,
          field_labels=(*_OBJECT_FIELDS, "involvedObject.kind", "involvedObject.namespace",
                        "involvedObject.name", "involvedObject.uid",
                        "involvedObject.apiVersion", "involvedObject.resourceVersion",
                        "involvedObject.fieldPath", "reason", "reportingComponent",
                        "source", "type")),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _g("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice",
       field_labels=(*_OBJECT_FIELDS, "addressType")),
    _g("coordination.k8s.io", "v1", "leases", "Lease", create_on_update=True),
    _g("events.k8s.io", "v1", "events", "Event", short_names=("ev",), create_on_update=True,
       field_labels=(*_OBJECT_FIELDS, "regarding.kind", "regarding.namespace",
                     "regarding.name", "regarding.uid", "reason", "type",
                     "reportingController")),
    _g("apps", "v1", "deployments", "Deployment", short_names=("deploy",),
       categories=("all",), subresources=frozenset({"status", "scale"}),
       sets_generation=True),
    _g("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",), categories=("all",),
       subresources=_STATUS, sets_generation=True),
    _g("rbac.authorization.k8s.io", "v1", "roles", "Role", create_on_update=True),
    _g("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False,
       create_on_update=True),
    _g("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding",
       create_on_update=True),
    _g("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
       namespaced=False, create_on_update=True),
    _g("apiextensions.k8s.io", "v1", "customresourcedefinitions",
       "CustomResourceDefinition", namespaced=False, short_names=("crd", "crds"),
       subresources=_STATUS, sets_generation=True, unconditional_update=False),
)

CRD_STORAGE_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NAMESPACES_KEY = "/namespaces"
SERVICES_KEY = "/services"


@dataclass(slots=True)
class Registry:
    """The served resources of one server: built-ins plus CRD-registered ones."""

    _by_gvr: dict[tuple[str, str, str], ResourceDef] = field(default_factory=dict)
    _group_order: list[str] = field(default_factory=list)
    generation: int = 0
    """Bumped on every change, so cached discovery documents know to rebuild."""

    @classmethod
    def with_builtins(cls) -> Registry:
        reg = cls()
        for r in BUILTINS:
            reg.add(r)
        return reg

    def add(self, r: ResourceDef) -> None:
        self._by_gvr[(r.group, r.version, r.plural)] = r
        if r.group not in self._group_order:
            self._group_order.append(r.group)
        self.generation += 1

    def remove_crd(self, crd_name: str) -> list[ResourceDef]:
        gone = [r for r in self._by_gvr.values() if r.crd_name == crd_name]
        for r in gone:
            del self._by_gvr[(r.group, r.version, r.plural)]
        live_groups = {r.group for r in self._by_gvr.values()}
        self._group_order = [g for g in self._group_order if g in live_groups]
        self.generation += 1
        return gone

    def get(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._by_gvr.get((group, version, plural))

    def has_group_version(self, group: str, version: str) -> bool:
        return any(r.group == group and r.version == version for r in self._by_gvr.values())

    def groups(self) -> list[str]:
        """Groups in registration order ('' = core first)."""
        return list(self._group_order)

    def versions(self, group: str) -> list[str]:
        """Versions of a group, preferred first (CRD version order, else registration)."""
        seen: list[str] = []
        for r in self._by_gvr.values():
            if r.group == group and r.version not in seen:
                seen.append(r.version)
        return seen

    def resources(self, group: str, version: str) -> list[ResourceDef]:
        return [r for r in self._by_gvr.values() if r.group == group and r.version == version]

    def by_storage_key(self, key: str) -> ResourceDef | None:
        for r in self._by_gvr.values():
            if r.storage_key == key:
                return r
        return None

    def __iter__(self) -> Iterator[ResourceDef]:
        return iter(list(self._by_gvr.values()))
