"""The REST verbs on stored objects, with the real server's semantics.

Every method here is *sync*: it validates against the current state and writes in one
step, so no other request can interleave (Trio only switches tasks at an ``await``). The
HTTP layer then awaits durability (:meth:`Store.wait_durable`) before replying.

Semantics implemented (issue 3 / kubectl.md): uid, creationTimestamp, generation bumped
on spec changes only; namespace defaulting and existence (NamespaceLifecycle);
``409 AlreadyExists``, ``409 Conflict`` on a stale resourceVersion (PUT or a patch that
carries one); writes to the main resource ignore ``status`` and writes to ``/status``
change only ``status``; no-op writes keep the resourceVersion; finalizers and
deletionTimestamp; delete preconditions; dry runs; CR pruning/defaulting/validation;
Service defaulting and allocation; CRD registration.

Simplified on purpose (documented in docs/architecture.md): managedFields only for
server-side apply (see ``_ssa``); no garbage collection of dependents
(``propagationPolicy`` is accepted and ignored); deleting a namespace deletes its contents
at once (objects with finalizers are marked and the namespace stays Terminating until they
are gone); deleting a CRD deletes its custom resources at once, ignoring their finalizers.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from purelb import fastjson

from . import _errors as E
from ._crd import complete_crd, validate_crd
from ._errors import Cause, StatusError
from ._meta import name_causes, timestamp
from ._patch import (
    PatchError,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)
from ._resources import CRD_STORAGE_KEY, NAMESPACES_KEY, SERVICES_KEY, Registry, ResourceDef
from ._selectors import _KEY_RE, _VALUE_RE, FieldSelector, LabelSelector
from ._services import Plan, ServiceAllocator
from ._ssa import server_side_apply
from ._store import Change, Store

_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "generation")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATE_SUFFIX_LEN = 5  # like the real server's names.SimpleNameGenerator


class PatchType:
    """Content types of PATCH bodies (kubectl.md §6)."""

    MERGE = "application/merge-patch+json"
    JSON = "application/json-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY_YAML = "application/apply-patch+yaml"
    APPLY_CBOR = "application/apply-patch+cbor"

    ALL = (MERGE, JSON, STRATEGIC, APPLY_YAML)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"
    """Strict | Warn | Ignore, as ?fieldValidation= (the real server's default is Warn)."""
    field_manager: str = ""
    """?fieldManager=; required for server-side apply."""


@dataclass(slots=True)
class WriteResult:
    obj: dict[str, Any]
    rv: int | None
    """The newest resourceVersion written (await its durability), None if nothing was."""
    created: bool = False
    warnings: list[str] = field(default_factory=list)
    change: Change | None = None
    """The stored change when ``obj`` is exactly what was stored (its JSON is cached)."""


class Objects:
    """Create, update, patch and delete with the real server's rules (see module docstring)."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        services: ServiceAllocator,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.registry = registry
        self.services = services
        self.clock = clock

    # ---- shared input checks ---------------------------------------------------------
    def _check_body(
        self,
        rdef: ResourceDef,
        body: Any,
        namespace: str,
        name: str | None = None,
        *,
        owned: bool = False,
    ) -> dict[str, Any]:
        """Validate the envelope of a request body; returns a dict this request owns.

        ``owned=True`` says the caller's body is already private to this request (freshly
        parsed JSON), so the defensive deep copy is skipped: it is a fifth of a create's
        cost. Patched objects share sub-trees with the stored object and must be copied.
        """
        if not isinstance(body, dict):
            raise E.bad_request(
                f"the request body must be a JSON object for a {rdef.kind}, "
                f"got {type(body).__name__}"
            )
        obj = body if owned else fastjson.copy_tree(body)
        api_version = obj.get("apiVersion")
        if api_version not in (None, "", rdef.api_version):
            alt = self._other_version(rdef, api_version)
            if alt is None:
                raise E.bad_request(
                    f"the API version in the data ({api_version}) does not match the expected "
                    f"API version ({rdef.api_version})"
                )
        kind = obj.get("kind")
        if kind not in (None, "", rdef.kind):
            raise E.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rdef.kind}) "
                f"for {rdef.plural}"
            )
        obj["apiVersion"] = rdef.api_version
        obj["kind"] = rdef.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise E.bad_request("metadata must be a JSON object")
        if rdef.namespaced:
            body_ns = meta.get("namespace")
            if body_ns not in (None, "") and body_ns != namespace:
                raise E.bad_request(
                    f"the namespace of the provided object ({body_ns}) does not match the "
                    f"namespace sent on the request ({namespace})"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            body_name = meta.get("name")
            if body_name not in (None, "") and body_name != name:
                raise E.bad_request(
                    f"the name of the object ({body_name}) does not match the name on the URL "
                    f"({name})"
                )
            meta["name"] = name
        causes = _map_causes(meta, "labels", label_values=True)
        causes += _map_causes(meta, "annotations", label_values=False)
        fins = meta.get("finalizers")
        if fins is not None and (
            not isinstance(fins, list) or not all(isinstance(f, str) and f for f in fins)
        ):
            causes.append(Cause("FieldValueInvalid", "must be a list of non-empty strings",
                                "metadata.finalizers"))
        if causes:
            raise E.invalid(rdef.kind, str(meta.get("name", "")), causes, rdef.group)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        return obj

    def _other_version(self, rdef: ResourceDef, api_version: Any) -> ResourceDef | None:
        if not isinstance(api_version, str) or "/" not in api_version or not rdef.crd_name:
            return None
        group, version = api_version.split("/", 1)
        if group != rdef.group:
            return None
        return self.registry.get(group, version, rdef.plural)

    def _namespace_ready(self, rdef: ResourceDef, namespace: str) -> None:
        if not rdef.namespaced:
            return
        ns = self.store.get(NAMESPACES_KEY, "", namespace)
        if ns is None:
            raise E.not_found("namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise StatusError(
                403, "Forbidden",
                f'{rdef.plural} "{rdef.kind}" is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated",
            )

    def _get_existing(self, rdef: ResourceDef, namespace: str, name: str) -> dict[str, Any]:
        old = self.store.get(rdef.storage_key, namespace, name)
        if old is None:
            raise E.not_found(rdef.plural, name, rdef.group)
        return old

    # ---- custom-resource schema ------------------------------------------------------
    def _apply_schema(
        self, rdef: ResourceDef, obj: dict[str, Any], opts: WriteOptions, warnings: list[str]
    ) -> dict[str, Any]:
        if rdef.schema is None:
            return obj
        pruned, dropped = rdef.schema.prune(obj)
        if dropped and opts.field_validation == "Strict":
            listing = ", ".join(f'unknown field "{d}"' for d in dropped)
            raise E.bad_request(f"strict decoding error: {listing}")
        if dropped and opts.field_validation == "Warn":
            warnings.extend(f'unknown field "{d}"' for d in dropped)
        defaulted = rdef.schema.default(pruned)
        causes = rdef.schema.validate(defaulted)
        if causes:
            raise E.invalid(rdef.kind, defaulted["metadata"].get("name", ""), causes, rdef.group)
        return defaulted

    # ---- create ----------------------------------------------------------------------
    def create(
        self,
        rdef: ResourceDef,
        namespace: str,
        body: Any,
        opts: WriteOptions,
        *,
        owned: bool = False,
        managed_fields: list[dict[str, Any]] | None = None,
    ) -> WriteResult:
        """Create an object; ``owned=True`` when ``body`` is private to this call."""
        obj = self._check_body(rdef, body, namespace, owned=owned)
        if managed_fields is not None:
            obj["metadata"]["managedFields"] = managed_fields
        meta = obj["metadata"]
        name = meta.get("name") or ""
        if not name:
            gen = meta.get("generateName")
            if not gen or not isinstance(gen, str):
                raise E.invalid(rdef.kind, "", [Cause(
                    "FieldValueRequired", "Required value: name or generateName is required",
                    "metadata.name")], rdef.group)
            name = gen + "".join(
                secrets.choice(_GENERATE_ALPHABET) for _ in range(_GENERATE_SUFFIX_LEN)
            )
            meta["name"] = name
        if not isinstance(name, str):
            raise E.bad_request(f"metadata.name must be a string, got {name!r}")
        if causes := name_causes(rdef.storage_key, name):
            raise E.invalid(rdef.kind, name, causes, rdef.group)
        if meta.get("resourceVersion"):
            raise E.bad_request("resourceVersion should not be set on objects to be created")
        self._namespace_ready(rdef, namespace)
        ns = namespace if rdef.namespaced else ""
        if self.store.get(rdef.storage_key, ns, name) is not None:
            raise E.already_exists(rdef.plural, name, rdef.group)
        now = self.clock()
        for f in _SERVER_META:
            meta.pop(f, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp(now)
        if rdef.sets_generation:
            meta["generation"] = 1
        warnings: list[str] = []
        self._reset_status_on_create(rdef, obj)
        obj = self._apply_schema(rdef, obj, opts, warnings)
        plan: Plan | None = None
        new_defs: list[ResourceDef] = []
        if rdef.storage_key == SERVICES_KEY:
            plan = self.services.plan(obj, None)
            obj = plan.obj
        elif rdef.storage_key == CRD_STORAGE_KEY:
            new_defs = self._check_crd(obj, None)
            complete_crd(obj, now)
        if opts.dry_run:
            return WriteResult(obj, None, created=True, warnings=warnings)
        change = self.store.put(rdef.storage_key, ns, name, obj)
        if plan is not None:
            self.services.apply(plan)
        for d in new_defs:
            self.registry.add(d)
        return WriteResult(change.obj, change.rv, created=True, warnings=warnings,
                           change=change)

    @staticmethod
    def _reset_status_on_create(rdef: ResourceDef, obj: dict[str, Any]) -> None:
        """Clients cannot set status on create (except Nodes, whose kubelet does)."""
        if not rdef.has_status or (rdef.kind == "Node" and not rdef.crd_name):
            return
        obj.pop("status", None)
        if rdef.crd_name:
            return
        match rdef.kind:
            case "Namespace":
                obj["status"] = {"phase": "Active"}
            case "Pod":
                obj["status"] = {"phase": "Pending"}
            case "Service":
                obj["status"] = {"loadBalancer": {}}
            case _:
                obj["status"] = {}

    def _check_crd(self, crd: dict[str, Any], old: dict[str, Any] | None) -> list[ResourceDef]:
        defs = validate_crd(crd)
        for d in defs:
            existing = self.registry.get(d.group, d.version, d.plural)
            if existing is not None and existing.crd_name != d.crd_name:
                raise E.invalid("CustomResourceDefinition", crd["metadata"]["name"], [Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{d.plural}": conflicts with a built-in resource',
                    "spec.names.plural")], "apiextensions.k8s.io")
        if old is not None:
            changed = [f for f in ("group", "scope") if old["spec"].get(f) != crd["spec"].get(f)]
            if changed:
                raise E.invalid("CustomResourceDefinition", crd["metadata"]["name"], [
                    Cause("FieldValueInvalid", "field is immutable", f"spec.{f}")
                    for f in changed], "apiextensions.k8s.io")
        return defs

    # ---- update / patch --------------------------------------------------------------
    def update(
        self,
        rdef: ResourceDef,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions,
        *,
        subresource: str = "",
    ) -> WriteResult:
        ns = namespace if rdef.namespaced else ""
        old = self.store.get(rdef.storage_key, ns, name)
        if old is None:
            if not rdef.create_on_update or subresource:
                raise E.not_found(rdef.plural, name, rdef.group)
            created = self._check_body(rdef, body, namespace, name)
            created["metadata"].pop("resourceVersion", None)
            return self.create(rdef, namespace, created, opts, owned=True)
        new = self._check_body(rdef, body, namespace, name)
        want_rv = new["metadata"].get("resourceVersion")
        if want_rv in (None, "") and not rdef.unconditional_update:
            raise E.invalid(rdef.kind, name, [Cause(
                "FieldValueInvalid", "Invalid value: 0x0: must be specified for an update",
                "metadata.resourceVersion")], rdef.group)
        if want_rv not in (None, "") and str(want_rv) != old["metadata"]["resourceVersion"]:
            raise E.conflict(rdef.plural, name, rdef.group)
        return self._write_update(rdef, ns, old, self._merge_update(rdef, old, new, subresource),
                                  opts, subresource)

    def patch(
        self,
        rdef: ResourceDef,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        opts: WriteOptions,
        *,
        subresource: str = "",
        force: bool = False,
    ) -> WriteResult:
        ns = namespace if rdef.namespaced else ""
        old = self.store.get(rdef.storage_key, ns, name)
        if patch_type == PatchType.APPLY_YAML and not opts.field_manager:
            raise E.bad_request("PATCH with application/apply-patch+yaml requires ?fieldManager=")
        if old is None:
            if patch_type == PatchType.APPLY_YAML and not subresource:
                body = self._check_body(rdef, patch, namespace, name)
                stamp = {"apiVersion": rdef.api_version, "kind": rdef.kind,
                         "metadata": {"name": name}}
                applied = server_side_apply(
                    stamp, body, manager=opts.field_manager, subresource="", force=force,
                    strategic=rdef.strategic, has_status=rdef.has_status,
                    api_version=rdef.api_version, time=timestamp(self.clock()))
                return self.create(rdef, namespace, body, opts,
                                   managed_fields=applied["metadata"]["managedFields"])
            raise E.not_found(rdef.plural, name, rdef.group)
        try:
            if patch_type == PatchType.MERGE:
                if not isinstance(patch, dict):
                    raise PatchError("a merge patch must be a JSON object")
                patched = json_merge_patch(old, patch)
            elif patch_type == PatchType.JSON:
                patched = json_patch(old, patch)
            elif patch_type == PatchType.STRATEGIC:
                if not rdef.strategic:
                    raise E.unsupported_media_type(
                        "the body of the request was in an unknown format - accepted media "
                        "types include: application/json-patch+json, "
                        "application/merge-patch+json, application/apply-patch+yaml"
                    )
                patched = strategic_merge_patch(old, patch)
            elif patch_type == PatchType.APPLY_YAML:
                if not isinstance(patch, dict):
                    raise PatchError("an apply patch must be a YAML or JSON object")
                patched = server_side_apply(
                    old, patch, manager=opts.field_manager, subresource=subresource,
                    force=force, strategic=rdef.strategic, has_status=rdef.has_status,
                    api_version=rdef.api_version, time=timestamp(self.clock()))
            else:
                raise E.unsupported_media_type(
                    f"the patch content type {patch_type!r} is not supported; use one of "
                    + ", ".join(PatchType.ALL)
                )
        except PatchError as exc:
            raise StatusError(422, "Invalid", str(exc)) from None
        if not isinstance(patched, dict):
            raise StatusError(422, "Invalid", "the patched object is not a JSON object")
        managed = patched.get("metadata", {}).get("managedFields")
        new = self._check_body(rdef, patched, namespace, name)
        want_rv = new["metadata"].get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != old["metadata"]["resourceVersion"]:
            raise E.conflict(rdef.plural, name, rdef.group)
        merged = self._merge_update(rdef, old, new, subresource)
        if patch_type == PatchType.APPLY_YAML and managed is not None:
            merged["metadata"]["managedFields"] = fastjson.copy_tree(managed)
        return self._write_update(rdef, ns, old, merged, opts, subresource)

    @staticmethod
    def _merge_update(
        rdef: ResourceDef, old: dict[str, Any], new: dict[str, Any], subresource: str
    ) -> dict[str, Any]:
        if subresource == "status":
            result = fastjson.copy_tree(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            return result
        if subresource:
            raise E.no_such_path(f"{rdef.plural}/{subresource}")
        result = new
        meta, old_meta = result["metadata"], old["metadata"]
        for f in (*_SERVER_META, "managedFields"):
            if f in old_meta:
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)
        if rdef.has_status:
            if "status" in old:
                result["status"] = fastjson.copy_tree(old["status"])
            else:
                result.pop("status", None)
        return result

    def _write_update(
        self,
        rdef: ResourceDef,
        ns: str,
        old: dict[str, Any],
        result: dict[str, Any],
        opts: WriteOptions,
        subresource: str,
    ) -> WriteResult:
        warnings: list[str] = []
        name = old["metadata"]["name"]
        result = self._apply_schema(rdef, result, opts, warnings)
        plan: Plan | None = None
        new_defs: list[ResourceDef] = []
        if rdef.storage_key == SERVICES_KEY and not subresource:
            plan = self.services.plan(result, old)
            result = plan.obj
        elif rdef.storage_key == CRD_STORAGE_KEY and not subresource:
            new_defs = self._check_crd(result, old)
            complete_crd(result, self.clock())
            result["status"]["conditions"] = old.get("status", {}).get(
                "conditions", result["status"]["conditions"]
            )
        if rdef.sets_generation and _spec_of(result) != _spec_of(old):
            result["metadata"]["generation"] = int(old["metadata"].get("generation", 0)) + 1
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if result == old:
            return WriteResult(old, None, warnings=warnings)
        if opts.dry_run:
            return WriteResult(result, None, warnings=warnings)
        meta = result["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            change = self.store.delete(rdef.storage_key, ns, name)
            self._after_delete(rdef, change.obj)
            return WriteResult(change.obj, self.store.rv, warnings=warnings)
        change = self.store.put(rdef.storage_key, ns, name, result)
        if plan is not None:
            self.services.apply(plan)
        if new_defs:
            self.registry.remove_crd(name)
            for d in new_defs:
                self.registry.add(d)
        return WriteResult(change.obj, change.rv, warnings=warnings, change=change)

    # ---- scale subresource (autoscaling/v1 Scale of a Deployment) ---------------------
    def get_scale(self, rdef: ResourceDef, namespace: str, name: str) -> dict[str, Any]:
        return scale_of(self._get_existing(rdef, namespace if rdef.namespaced else "", name))

    def patch_scale(
        self, rdef: ResourceDef, namespace: str, name: str, patch_type: str, patch: Any,
        opts: WriteOptions,
    ) -> WriteResult:
        current = self.get_scale(rdef, namespace, name)
        try:
            if patch_type == PatchType.JSON:
                patched = json_patch(current, patch)
            elif patch_type in (PatchType.MERGE, PatchType.STRATEGIC, PatchType.APPLY_YAML):
                if not isinstance(patch, dict):
                    raise PatchError("a merge patch must be a JSON object")
                patched = json_merge_patch(current, patch)
            else:
                raise E.unsupported_media_type(f"unsupported patch type {patch_type!r}")
        except PatchError as exc:
            raise StatusError(422, "Invalid", str(exc)) from None
        return self.update_scale(rdef, namespace, name, patched, opts)

    def update_scale(
        self, rdef: ResourceDef, namespace: str, name: str, scale: Any, opts: WriteOptions
    ) -> WriteResult:
        """Set spec.replicas from a Scale; the reply is the new Scale."""
        ns = namespace if rdef.namespaced else ""
        old = self._get_existing(rdef, ns, name)
        if not isinstance(scale, dict) or not isinstance(scale.get("spec", {}), dict):
            raise E.bad_request("the body must be an autoscaling/v1 Scale object")
        want_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != old["metadata"]["resourceVersion"]:
            raise E.conflict(rdef.plural, name, rdef.group)
        replicas = scale.get("spec", {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise E.invalid("Scale", name, [Cause(
                "FieldValueInvalid",
                f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                "spec.replicas")], "autoscaling")
        result = fastjson.copy_tree(old)
        result.setdefault("spec", {})["replicas"] = replicas
        res = self._write_update(rdef, ns, old, result, opts, "")
        return WriteResult(scale_of(res.obj), res.rv)

    # ---- delete ----------------------------------------------------------------------
    def delete(
        self,
        rdef: ResourceDef,
        namespace: str,
        name: str,
        options: Any,
        opts: WriteOptions,
    ) -> WriteResult:
        ns = namespace if rdef.namespaced else ""
        old = self._get_existing(rdef, ns, name)
        if options is not None and not isinstance(options, dict):
            raise E.bad_request("DeleteOptions must be a JSON object")
        pre = (options or {}).get("preconditions") or {}
        if not isinstance(pre, dict):
            raise E.bad_request("preconditions must be a JSON object")
        meta = old["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise E.conflict(
                rdef.plural, name, rdef.group,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{meta['uid']}",
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta["resourceVersion"]:
            raise E.conflict(
                rdef.plural, name, rdef.group,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
            )
        if opts.dry_run:
            return WriteResult(old, None)
        return self._delete_obj(rdef, ns, old)

    def _delete_obj(self, rdef: ResourceDef, ns: str, old: dict[str, Any]) -> WriteResult:
        name = old["metadata"]["name"]
        if old["metadata"].get("finalizers") or rdef.storage_key == NAMESPACES_KEY:
            if old["metadata"].get("deletionTimestamp"):
                return WriteResult(old, None)
            marked = fastjson.copy_tree(old)
            m = marked["metadata"]
            m["deletionTimestamp"] = timestamp(self.clock())
            m["deletionGracePeriodSeconds"] = 0
            if m.get("generation"):
                m["generation"] = int(m["generation"]) + 1
            if rdef.storage_key == NAMESPACES_KEY:
                marked.setdefault("status", {})["phase"] = "Terminating"
            change = self.store.put(rdef.storage_key, ns, name, marked)
            if rdef.storage_key == NAMESPACES_KEY:
                self._empty_namespace(name)
                return WriteResult(
                    self.store.get(rdef.storage_key, ns, name) or change.obj, self.store.rv
                )
            return WriteResult(change.obj, change.rv)
        change = self.store.delete(rdef.storage_key, ns, name)
        self._after_delete(rdef, change.obj)
        return WriteResult(change.obj, self.store.rv)

    def _after_delete(self, rdef: ResourceDef, obj: dict[str, Any]) -> None:
        if rdef.storage_key == SERVICES_KEY:
            self.services.release(obj)
        elif rdef.storage_key == CRD_STORAGE_KEY:
            gone = self.registry.remove_crd(obj["metadata"]["name"])
            for skey in {d.storage_key for d in gone}:
                if self.registry.by_storage_key(skey) is None:
                    for cr in self.store.list(skey):
                        self.store.delete(skey, cr["metadata"].get("namespace", ""),
                                          cr["metadata"]["name"])
        if rdef.namespaced:
            self._maybe_finish_namespace(obj["metadata"].get("namespace", ""))

    def _namespaced_keys(self) -> list[str]:
        return sorted({r.storage_key for r in self.registry if r.namespaced})

    def _empty_namespace(self, namespace: str) -> None:
        for skey in self._namespaced_keys():
            rdef = self.registry.by_storage_key(skey)
            assert rdef is not None
            for obj in self.store.list(skey, namespace):
                self._delete_obj(rdef, namespace, obj)
        self._maybe_finish_namespace(namespace)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        ns = self.store.get(NAMESPACES_KEY, "", namespace)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if ns["metadata"].get("finalizers"):
            return
        if any(self.store.list(k, namespace) for k in self._namespaced_keys()):
            return
        self.store.delete(NAMESPACES_KEY, "", namespace)

    def delete_collection(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        options: Any,
        opts: WriteOptions,
    ) -> tuple[list[dict[str, Any]], int | None]:
        deleted: list[dict[str, Any]] = []
        last: int | None = None
        for obj in self.store.list(rdef.storage_key, namespace):
            if not labels.matches(obj["metadata"].get("labels")) or not fields.matches(obj):
                continue
            res = self.delete(rdef, obj["metadata"].get("namespace", ""),
                              obj["metadata"]["name"], options, opts)
            deleted.append(res.obj)
            last = res.rv if res.rv is not None else last
        return deleted, last

    def bootstrap_namespaces(self, names: tuple[str, ...]) -> None:
        """Create the namespaces every real cluster starts with (idempotent)."""
        rdef = self.registry.get("", "v1", "namespaces")
        assert rdef is not None
        for n in names:
            if self.store.get(NAMESPACES_KEY, "", n) is None:
                self.create(rdef, "", {"metadata": {"name": n}}, WriteOptions())


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale view of a Deployment."""
    meta = obj["metadata"]
    match = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                           "creationTimestamp") if k in meta},
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 1)},
        "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in sorted(match.items()))},
    }


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what a generation bump tracks."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _map_causes(meta: dict[str, Any], key: str, *, label_values: bool) -> list[Cause]:
    m = meta.get(key)
    if m is None:
        return []
    fld = f"metadata.{key}"
    if not isinstance(m, dict):
        return [Cause("FieldValueInvalid", "must be a map of string to string", fld)]
    causes: list[Cause] = []
    for k, v in m.items():
        if not _KEY_RE.match(k) or len(k.rsplit("/", 1)[-1]) > 63:
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "{k}": name part must '
                                "consist of alphanumeric characters, '-', '_' or '.'", fld))
        if not isinstance(v, str):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {v!r}: must be a string",
                                f"{fld}.{k}"))
        elif label_values and (len(v) > 63 or not _VALUE_RE.match(v)):
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "{v}": a valid label '
                                "must be an empty string or consist of alphanumeric characters, "
                                "'-', '_' or '.'", fld))
    return causes
