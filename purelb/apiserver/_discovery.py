"""Discovery and OpenAPI documents, built from the :class:`Registry`.

- ``/version``: major "1", minor "32" — the kubectl dispatcher picks its bundled kubectl
  from ``minor`` (kubectl.md §0.1).
- ``/api`` and ``/apis``: aggregated discovery (``APIGroupDiscoveryList``) when the client
  accepts it, with the exact media type parameters kubectl requires (§3, gotcha 6);
  otherwise the legacy ``APIVersions`` / ``APIGroupList``.
- ``/api/v1`` and ``/apis/<g>/<v>``: ``APIResourceList``.
- ``/openapi/v3``: a root listing each group-version and one document per group-version
  holding a PATCH operation per kind with the ``fieldValidation`` parameter: exactly
  what kubectl's validator looks for (§4). Hashes are content digests, so kubectl's
  cache stays correct.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ._resources import ALL_VERBS, SUBRESOURCE_VERBS, Registry, ResourceDef

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = (
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
)

VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-purelb",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def wants_aggregated(accept: str) -> str | None:
    """The aggregated media type the client accepts (v2 preferred), or None."""
    beta = False
    for part in accept.replace(" ", "").lower().split(","):
        params = set(part.split(";")[1:])
        if "as=apigroupdiscoverylist" not in params or "g=apidiscovery.k8s.io" not in params:
            continue
        if "v=v2" in params:
            return AGGREGATED_V2
        beta = beta or "v=v2beta1" in params
    return AGGREGATED_V2BETA1 if beta else None


def _resource_discovery(r: ResourceDef) -> dict[str, Any]:
    rk = {"group": r.group, "version": r.version, "kind": r.kind}
    d: dict[str, Any] = {
        "resource": r.plural,
        "singularResource": r.singular,
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "responseKind": rk,
        "verbs": list(ALL_VERBS),
    }
    if r.short_names:
        d["shortNames"] = list(r.short_names)
    if r.categories:
        d["categories"] = list(r.categories)
    subs = []
    for s in sorted(r.subresources):
        kind = rk if s == "status" else {"group": "autoscaling", "version": "v1",
                                          "kind": "Scale"}
        subs.append({"subresource": s, "verbs": list(SUBRESOURCE_VERBS), "responseKind": kind})
    if subs:
        d["subresources"] = subs
    return d


def aggregated(registry: Registry, *, core: bool, media_type: str) -> dict[str, Any]:
    """APIGroupDiscoveryList for /api (core only) or /apis (all other groups)."""
    items = []
    for g in registry.groups():
        if (g == "") != core:
            continue
        versions = []
        for v in registry.versions(g):
            res = sorted(registry.resources(g, v), key=lambda r: r.plural)
            versions.append({"version": v, "freshness": "Current",
                             "resources": [_resource_discovery(r) for r in res]})
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    version = "v2beta1" if "v2beta1" in media_type else "v2"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _group(registry: Registry, g: str) -> dict[str, Any]:
    vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in registry.versions(g)]
    return {"name": g, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [_group(registry, g) for g in registry.groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, g: str) -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(registry, g)}


def api_resource_list(registry: Registry, g: str, v: str) -> dict[str, Any]:
    out = []
    for r in sorted(registry.resources(g, v), key=lambda r: r.plural):
        entry: dict[str, Any] = {
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": list(ALL_VERBS),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for s in sorted(r.subresources):
            out.append({"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind if s == "status" else "Scale",
                        "verbs": list(SUBRESOURCE_VERBS)})
    gv = f"{g}/{v}" if g else v
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _gv_path(g: str, v: str) -> str:
    return f"api/{v}" if not g else f"apis/{g}/{v}"


def _field_validation_param() -> list[dict[str, Any]]:
    return [
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string",
                                                          "uniqueItems": True}},
        {"name": "fieldValidation", "in": "query",
         "schema": {"type": "string", "uniqueItems": True}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}},
    ]


def openapi_gv(registry: Registry, g: str, v: str) -> dict[str, Any]:
    """One group-version document: a PATCH op per kind and no schemas.

    Schemas are left out on purpose: with a schema present kubectl 1.32 computes apply
    patches from it and needs full ObjectMeta definitions ("unable to find api field
    metadata"); without one it uses its compiled-in types (built-ins) or a merge patch
    (custom resources), which is what it does against a real server too.
    """
    paths: dict[str, Any] = {}
    for r in sorted(registry.resources(g, v), key=lambda r: r.plural):
        base = f"/{_gv_path(g, v)}"
        if r.namespaced:
            item = f"{base}/namespaces/{{namespace}}/{r.plural}/{{name}}"
        else:
            item = f"{base}/{r.plural}/{{name}}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        op = {
            "operationId": f"patch{r.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": _field_validation_param(),
            "requestBody": {"content": {
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}},
            }},
            "responses": {"200": {"description": "OK"}},
        }
        if r.strategic:
            op["requestBody"]["content"]["application/strategic-merge-patch+json"] = {
                "schema": {"type": "object"}}
        paths[item] = {"patch": op}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }


def encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def openapi_root(registry: Registry) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The /openapi/v3 root and the encoded GV documents keyed by path ('api/v1', ...)."""
    docs: dict[str, bytes] = {}
    root: dict[str, Any] = {"paths": {}}
    for g in registry.groups():
        for v in registry.versions(g):
            path = _gv_path(g, v)
            body = encode(openapi_gv(registry, g, v))
            digest = hashlib.sha512(body).hexdigest()[:64].upper()
            docs[path] = body
            root["paths"][path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return root, docs
