"""Patch semantics: JSON merge patch, JSON patch, and the strategic merge patch kubectl sends.

Pure functions over JSON values; none mutates its inputs.

Strategic merge patch (kubectl.md §6) is implemented for what ``kubectl apply`` of the
built-in kinds sends: maps merge recursively and ``null`` deletes; lists with a merge key
(table :func:`merge_key`, taken from the Kubernetes Go type tags) merge element by element;
``$patch: delete|replace``, ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``
and ``$retainKeys`` are honoured; ``metadata.finalizers`` is a set-like primitive list.
Simplified: the merge key table is keyed on field paths rather than derived from Go
types, so a list this table does not know is replaced whole (the Go default for lists
without a ``patchStrategy``), and ``$setElementOrder`` puts unmentioned server-side
elements after the ordered ones instead of interleaving them.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from purelb import fastjson


class PatchError(ValueError):
    """A patch is malformed or cannot be applied; the message says where."""


_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})

#: list field name -> merge key, where the name alone decides it.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}

#: primitive lists merged as sets (``patchStrategy:"merge"`` on a []string).
_PRIMITIVE_MERGE: frozenset[tuple[str, ...]] = frozenset({("metadata", "finalizers")})


def merge_key(path: tuple[str, ...]) -> str | None:
    """The merge key of the list at ``path`` (field names only, list indices dropped)."""
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        if len(path) >= 2 and path[-2] in _CONTAINER_LISTS:
            return "containerPort"
        if path == ("spec", "ports"):
            return "port"
        return None
    if name == "addresses" and path[:-1] == ("status",):
        return "type"  # Node status.addresses
    return _MERGE_KEYS.get(name)


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return fastjson.copy_tree(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, patch: Any) -> Any:
    """RFC 6902 via ``jsonpatch``; failures become :class:`PatchError`."""
    if not isinstance(patch, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        return jsonpatch.JsonPatch(patch).apply(fastjson.copy_tree(target))
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchError(f"the JSON patch cannot be applied: {exc}") from None
    except (TypeError, KeyError, ValueError) as exc:
        raise PatchError(f"the JSON patch is malformed: {exc}") from None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to a built-in object (see the module docstring)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    result = _merge_map(target if isinstance(target, dict) else {}, patch, ())
    return {} if result is None else result


def _merge_map(orig: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip(patch)
    if directive is not None:
        raise PatchError(f"unknown $patch directive {directive!r} at {_fmt(path)}")
    result = fastjson.copy_tree(orig)
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError(f"$retainKeys at {_fmt(path)} must be a list")
        keep = set(retain)
        result = {k: v for k, v in result.items() if k in keep}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            if not isinstance(value, list):
                raise PatchError(f"{key} at {_fmt(path)} must be a list")
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if not isinstance(value, list):
                raise PatchError(f"{key} at {_fmt(path)} must be a list")
            cur = result.get(name)
            if isinstance(cur, list):
                result[name] = [v for v in cur if v not in value]
            continue
        if key.startswith("$"):
            raise PatchError(f"unknown directive {key!r} at {_fmt(path)}")
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            cur = result.get(key)
            merged = _merge_map(cur if isinstance(cur, dict) else {}, value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, sub)
        else:
            result[key] = value
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _apply_order(result[name], order, merge_key((*path, name)))
    return result


def _merge_list(orig: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    current = orig if isinstance(orig, list) else []
    if path in _PRIMITIVE_MERGE:
        out = list(current)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    key = merge_key(path)
    if key is None or not all(isinstance(e, dict) for e in patch):
        return [_strip(e) for e in patch]
    if any(e.get("$patch") == "replace" and len(e) == 1 for e in patch):
        return [_strip(e) for e in patch if e.get("$patch") != "replace"]
    out = fastjson.copy_tree(current)
    for elem in patch:
        if key not in elem:
            raise PatchError(f"an element of {_fmt(path)} lacks its merge key {key!r}")
        idx = next(
            (i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == elem[key]),
            None,
        )
        if elem.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            merged = _merge_map({}, elem, path)
            if merged is not None:
                out.append(merged)
        else:
            merged = _merge_map(out[idx], elem, path)
            if merged is None:
                del out[idx]
            else:
                out[idx] = merged
    return out


def _apply_order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        if key is not None and isinstance(item, dict):
            return item.get(key)
        return item

    wanted = [ident(o) for o in order]
    rank = {repr(w): i for i, w in enumerate(wanted)}
    ordered = sorted(
        (i for i in items if repr(ident(i)) in rank), key=lambda i: rank[repr(ident(i))]
    )
    rest = [i for i in items if repr(ident(i)) not in rank]
    return ordered + rest


def _strip(value: Any) -> Any:
    """Remove patch directives from a value that replaces whole."""
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _fmt(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<root>"
