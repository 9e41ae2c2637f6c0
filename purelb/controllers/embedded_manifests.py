"""Start-up manifests of the embedded mode: YAML files -> typed documents -> server-side apply.

Parsing is pure (:func:`load_manifests`, :func:`plan_apply`); :func:`apply_manifests` is the
thin I/O part. Applying goes through the same HTTP client as every other component, as
server-side apply with one field manager, so running the same files again changes nothing
(the server keeps the resourceVersion of a no-op apply) and a changed file changes only the
fields it names. Fields other writers own (the allocator's annotations and status, a
``kubectl edit`` of a field the file does not mention) are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from purelb.errors import ConfigError
from purelb.kube import (
    CONFIG_MAPS,
    ENDPOINT_SLICES,
    LB_NODE_AGENTS,
    NAMESPACES,
    SECRETS,
    SERVICE_GROUPS,
    SERVICES,
    BadRequest,
    Invalid,
    KubeClient,
    NotFound,
    Resource,
)

LOGGER = logging.getLogger(__name__)

JSON = dict[str, Any]
FIELD_MANAGER = "purelb-embedded"
"""The field manager of start-up manifests (shows in managedFields)."""
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

#: Kinds a start-up manifest may hold, in the order they are applied: namespaces first,
#: then what the daemons read at start, Services last so they meet a configured allocator.
KINDS: tuple[Resource, ...] = (NAMESPACES, SECRETS, CONFIG_MAPS, LB_NODE_AGENTS,
                               SERVICE_GROUPS, SERVICES, ENDPOINT_SLICES)
_BY_GVK = {(r.api_version, r.kind): r for r in KINDS}


@dataclass(frozen=True, slots=True)
class Manifest:
    """One document of a start-up file, with where it came from (for error messages)."""

    resource: Resource
    namespace: str | None
    name: str
    body: JSON
    source: str

    def __repr__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"Manifest({self.resource.kind} {where}{self.name} from {self.source})"


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus the YAML/JSON files of named directories (sorted)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(x for x in p.iterdir() if x.suffix in MANIFEST_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise ConfigError(f"--config {p}: no such file or directory", path="config",
                              value=str(p))
    return files


def parse_document(doc: Any, *, source: str, install_namespace: str) -> Manifest:
    """One YAML document -> :class:`Manifest`; ConfigError names the file and the problem."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a manifest must be a mapping, got {type(doc).__name__}",
                          path="config", value=source)
    gvk = (doc.get("apiVersion"), doc.get("kind"))
    resource = _BY_GVK.get(gvk)  # type: ignore[arg-type]
    if resource is None:
        known = ", ".join(f"{r.api_version} {r.kind}" for r in KINDS)
        raise ConfigError(f"{source}: {gvk[0]} {gvk[1]} is not a kind embedded mode applies "
                          f"(known: {known})", path="config", value=f"{gvk[0]} {gvk[1]}")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: {resource.kind} without metadata.name", path="config",
                          value=source)
    namespace: str | None = None
    if resource.namespaced:
        given = meta.get("namespace") if isinstance(meta, dict) else None
        # purelb's own kinds are read from the install namespace; the rest default like kubectl
        default = install_namespace if resource.group == "purelb.io" else "default"
        namespace = given if isinstance(given, str) and given else default
    body = {**doc, "metadata": {**meta, **({"namespace": namespace} if namespace else {})}}
    return Manifest(resource, namespace, name, body, source)


def load_manifests(paths: Iterable[Path], *, install_namespace: str) -> list[Manifest]:
    """Read and parse every document; fails on the first bad one, before anything is applied."""
    out: list[Manifest] = []
    for f in manifest_files(paths):
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {f}: {exc}", path="config", value=str(f)) from None
        for i, doc in enumerate(docs):
            if doc is None:
                continue
            out.append(parse_document(doc, source=f"{f} (document {i + 1})",
                                      install_namespace=install_namespace))
    return out


def plan_apply(manifests: Sequence[Manifest], *, install_namespace: str) -> list[Manifest]:
    """Apply order (see :data:`KINDS`), with the namespaces the objects need added first."""
    seen = {(m.resource.kind, m.namespace, m.name) for m in manifests}
    needed = {install_namespace} | {m.namespace for m in manifests if m.namespace}
    extra = [Manifest(NAMESPACES, None, ns,
                      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                      "implied by the manifests")
             for ns in sorted(needed) if ("Namespace", None, ns) not in seen]
    order = {r.kind: i for i, r in enumerate(KINDS)}
    return sorted([*extra, *manifests], key=lambda m: order[m.resource.kind])


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What one start-up apply did (logged, and returned for tests)."""

    created: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


async def apply_manifests(client: KubeClient, manifests: Sequence[Manifest]) -> ApplyReport:
    """Server-side apply each manifest (in the given order); API errors name the object."""
    created: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    for m in manifests:
        label = f"{m.resource.kind} {m.namespace + '/' if m.namespace else ''}{m.name}"
        try:
            before = await client.get(m.resource, m.name, namespace=m.namespace)
        except NotFound:
            before = None
        try:
            out = await client.apply(m.resource, m.body, field_manager=FIELD_MANAGER,
                                     force=True, namespace=m.namespace)
        except (Invalid, BadRequest) as exc:  # the file is wrong, not the server
            raise ConfigError(f"{m.source}: {label} rejected: {exc}", path="config",
                              value=label) from None
        if before is None:
            created.append(label)
        elif _rv(before) == _rv(out):
            unchanged.append(label)
        else:
            changed.append(label)
    report = ApplyReport(tuple(created), tuple(changed), tuple(unchanged))
    LOGGER.info("event=manifests_applied created=%d changed=%d unchanged=%d",
                len(created), len(changed), len(unchanged))
    return report


def _rv(obj: JSON) -> Any:
    return (obj.get("metadata") or {}).get("resourceVersion")
