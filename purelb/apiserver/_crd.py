"""CustomResourceDefinitions: validate one, complete its status, and derive its resources.

Creating (or updating) a CRD registers one :class:`ResourceDef` per served version with
its scope, names, status subresource, printer columns and structural schema; discovery
and routing see the new resource as soon as the CRD write returns (kubectl.md §3).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ._errors import Cause, invalid
from ._meta import is_dns1123_label, is_dns1123_subdomain, timestamp
from ._resources import ResourceDef
from ._schema import SchemaError, StructuralSchema

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version ordering: GA > beta > alpha, higher numbers first, then others."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {"": 0, None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, version)


def validate_crd(crd: dict[str, Any]) -> list[ResourceDef]:
    """Check a CRD and return the resources it defines (served versions, preferred first).

    Raises:
        StatusError: 422 Invalid with one cause per problem.
    """
    name = crd.get("metadata", {}).get("name", "")
    spec = crd.get("spec")
    causes: list[Cause] = []

    def bad(fld: str, msg: str, reason: str = "FieldValueInvalid") -> None:
        causes.append(Cause(reason, msg, fld))

    if not isinstance(spec, dict):
        raise invalid("CustomResourceDefinition", name,
                      [Cause("FieldValueRequired", "Required value", "spec")],
                      group="apiextensions.k8s.io")
    group = spec.get("group", "")
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    plural = names.get("plural", "")
    kind = names.get("kind", "")
    if not group:
        bad("spec.group", "Required value", "FieldValueRequired")
    elif not is_dns1123_subdomain(group) or "." not in group:
        bad("spec.group", f'Invalid value: "{group}": should be a domain with at least one dot')
    if not plural:
        bad("spec.names.plural", "Required value", "FieldValueRequired")
    elif not is_dns1123_label(plural):
        bad("spec.names.plural", f'Invalid value: "{plural}": must be a DNS-1123 label')
    if not kind:
        bad("spec.names.kind", "Required value", "FieldValueRequired")
    if plural and group and name != f"{plural}.{group}":
        bad("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        bad("spec.scope", f'Unsupported value: "{scope}": supported values: "Cluster", '
            '"Namespaced"', "FieldValueNotSupported")
    singular = names.get("singular") or kind.lower()
    for i, sn in enumerate(names.get("shortNames") or []):
        if not isinstance(sn, str) or not is_dns1123_label(sn):
            bad(f"spec.names.shortNames[{i}]", f"Invalid value: {sn!r}: must be a DNS-1123 label")
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        bad("spec.versions", "Required value: must have exactly one version marked as storage "
            "version", "FieldValueRequired")
        versions = []
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if versions and len(storage) != 1:
        bad("spec.versions", "Invalid value: must have exactly one version marked as storage "
            "version")
    defs: list[ResourceDef] = []
    seen: set[str] = set()
    for i, v in enumerate(versions):
        where = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            bad(where, "must be an object")
            continue
        vname = v.get("name", "")
        if not vname or not is_dns1123_label(vname):
            bad(f"{where}.name", f'Invalid value: "{vname}": must be a DNS-1123 label')
            continue
        if vname in seen:
            bad(f"{where}.name", f'Duplicate value: "{vname}"', "FieldValueDuplicate")
        seen.add(vname)
        raw_schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if raw_schema is None:
            bad(f"{where}.schema.openAPIV3Schema", "Required value: schemas are required",
                "FieldValueRequired")
            continue
        try:
            schema = StructuralSchema(raw_schema)
        except SchemaError as exc:
            bad(f"{where}.schema.openAPIV3Schema", str(exc))
            continue
        subs = v.get("subresources") or {}
        columns = tuple(
            c for c in (v.get("additionalPrinterColumns") or []) if isinstance(c, dict)
        )
        for j, c in enumerate(columns):
            if not c.get("name") or not c.get("jsonPath"):
                bad(f"{where}.additionalPrinterColumns[{j}]", "name and jsonPath are required",
                    "FieldValueRequired")
        if not v.get("served", False):
            continue
        defs.append(ResourceDef(
            group=group, version=vname, plural=plural, singular=singular, kind=kind,
            namespaced=scope == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=frozenset({"status"} if "status" in subs else ()),
            sets_generation=True, strategic=False, printer_columns=columns,
            unconditional_update=False,
            schema=schema, crd_name=name,
        ))
    if causes:
        raise invalid("CustomResourceDefinition", name, causes, group="apiextensions.k8s.io")
    defs.sort(key=lambda d: version_priority(d.version))
    return defs


def complete_crd(crd: dict[str, Any], now: datetime) -> None:
    """Fill in defaulted names and the status a real server reports once established."""
    spec = crd["spec"]
    names = spec["names"]
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    for v in spec["versions"]:
        v.setdefault("served", True)
    spec.setdefault("conversion", {"strategy": "None"})
    stamp = timestamp(now)
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    old_status = crd.get("status") if isinstance(crd.get("status"), dict) else {}
    stored = list(old_status.get("storedVersions") or [])
    if storage not in stored:
        stored.append(storage)
    crd["status"] = {
        "acceptedNames": dict(names),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": stamp},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": stamp},
        ],
        "storedVersions": stored,
    }
