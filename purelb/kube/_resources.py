"""Typed descriptors of API resources and the URL paths built from them.

A :class:`Resource` is everything the client needs to address a kind of object: group,
version, plural, whether it lives in a namespace, and its kind. Paths are built here and
nowhere else, and every name that goes into a path is checked so a hostile or mistyped
name can never walk to another URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

#: Path segments that would change the meaning of a URL if used as a name.
_FORBIDDEN_SEGMENTS = frozenset({"", ".", ".."})


def _check_segment(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    if value in _FORBIDDEN_SEGMENTS or "/" in value or "%" in value:
        raise ValueError(
            f"{what} {value!r} cannot be used in an API path (empty, '.', '..', '/' or '%')"
        )
    return quote(value, safe="")


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """One API resource, core (``group=""``) or from an API group / CRD."""

    group: str
    """API group; ``""`` for the core group served under ``/api``."""
    version: str
    """API version inside the group, e.g. ``v1``."""
    plural: str
    """Lower-case plural used in URLs, e.g. ``services``."""
    kind: str
    """Kind written in objects, e.g. ``Service``."""
    namespaced: bool
    """Whether objects live in a namespace (URLs then carry ``/namespaces/<ns>``)."""

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` field of objects of this resource."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """Return the URL path for a collection (``name=None``) or one object.

        A namespaced resource without ``namespace`` addresses all namespaces (list/watch
        only). A cluster-scoped resource refuses a namespace.
        """
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        parts = [base]
        if namespace is not None:
            if not self.namespaced:
                raise ValueError(
                    f"{self.kind} ({self.plural}) is cluster-scoped; namespace {namespace!r} "
                    "must not be given"
                )
            parts.append(f"namespaces/{_check_segment('namespace', namespace)}")
        elif name is not None and self.namespaced:
            raise ValueError(
                f"{self.kind} {name!r} is namespaced; pass namespace= to address one object"
            )
        parts.append(self.plural)
        if name is not None:
            parts.append(_check_segment(f"{self.kind} name", name))
        if subresource is not None:
            if name is None:
                raise ValueError(f"subresource {subresource!r} needs an object name")
            parts.append(_check_segment("subresource", subresource))
        return "/".join(parts)

    def __repr__(self) -> str:
        scope = "namespaced" if self.namespaced else "cluster"
        return f"Resource({self.api_version}, {self.plural}, {scope})"


SERVICES = Resource(group="", version="v1", plural="services", kind="Service", namespaced=True)
ENDPOINT_SLICES = Resource(
    group="discovery.k8s.io", version="v1", plural="endpointslices", kind="EndpointSlice",
    namespaced=True,
)
SERVICE_GROUPS = Resource(
    group="purelb.io", version="v1", plural="servicegroups", kind="ServiceGroup", namespaced=True
)
LB_NODE_AGENTS = Resource(
    group="purelb.io", version="v1", plural="lbnodeagents", kind="LBNodeAgent", namespaced=True
)
SECRETS = Resource(group="", version="v1", plural="secrets", kind="Secret", namespaced=True)
LEASES = Resource(
    group="coordination.k8s.io", version="v1", plural="leases", kind="Lease", namespaced=True
)
EVENTS = Resource(
    group="events.k8s.io", version="v1", plural="events", kind="Event", namespaced=True
)
NODES = Resource(group="", version="v1", plural="nodes", kind="Node", namespaced=False)
PODS = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)
NAMESPACES = Resource(
    group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False
)
CONFIG_MAPS = Resource(
    group="", version="v1", plural="configmaps", kind="ConfigMap", namespaced=True
)
