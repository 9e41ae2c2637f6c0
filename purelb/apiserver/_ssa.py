"""Server-side apply, simplified: field ownership per Apply manager, conflicts, removal.

Pure functions over JSON objects. What it keeps from the real thing:
- each ``fieldManager`` that applies owns the field paths of its applied configuration,
  recorded in ``metadata.managedFields`` (``operation: Apply``, ``fieldsType: FieldsV1``,
  ``subresource`` for ``/status`` applies);
- a field another Apply manager owns and this apply would change is a 409 conflict unless
  ``force=true``, which transfers ownership;
- a field this manager applied before and omits now is removed (unless another manager
  owns it) — e.g. an allocator that stops reporting ``status.availableIPv6`` makes it go away.

Simplified: lists with a merge key (built-in kinds) are owned per element, every other
list is an atomic leaf (the applier owns the whole list); ``Update``
operations (PUT, other patches) do not take ownership, so they never cause conflicts; the
merge itself is the strategic merge (built-ins) or JSON merge (custom resources) of the
applied configuration onto the live object.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ._errors import StatusError
from ._patch import json_merge_patch, merge_key, strategic_merge_patch

Path = tuple[str, ...]
_MISSING = object()
_IGNORED_META = frozenset({"name", "namespace", "resourceVersion", "uid", "creationTimestamp",
                           "generation", "managedFields", "deletionTimestamp",
                           "deletionGracePeriodSeconds", "selfLink"})


def _names(prefix: Path) -> tuple[str, ...]:
    """Field names only (keyed list elements dropped), for merge-key lookup."""
    return tuple(p for p in prefix if not p.startswith("k:"))


def _elem_id(key: str, elem: dict[str, Any]) -> str:
    return "k:" + json.dumps({key: elem[key]}, separators=(",", ":"), sort_keys=True)


def paths_of(value: Any, prefix: Path = (), *, keyed: bool = False) -> set[Path]:
    """Leaf paths of a JSON value: maps recurse; with ``keyed``, lists that have a merge
    key recurse per element (``k:{"port":80}``, as in real fieldsV1); other lists, scalars
    and empty maps are leaves."""
    if isinstance(value, dict) and value:
        out: set[Path] = set()
        for k, v in value.items():
            out |= paths_of(v, (*prefix, k), keyed=keyed)
        return out
    if keyed and isinstance(value, list) and value:
        key = merge_key(_names(prefix))
        if key is not None and all(isinstance(e, dict) and key in e for e in value):
            out = set()
            for e in value:
                out |= paths_of(e, (*prefix, _elem_id(key, e)), keyed=keyed)
            return out
    return {prefix}


def applied_paths(applied: dict[str, Any], subresource: str, has_status: bool, *,
                  keyed: bool = False) -> set[Path]:
    """The paths an applied configuration claims, for the main resource or /status."""
    out = set()
    for p in paths_of(applied, keyed=keyed):
        if not p or p[0] in ("apiVersion", "kind"):
            continue
        if p[0] == "metadata" and (len(p) < 2 or p[1] in _IGNORED_META):
            continue
        if subresource == "status" and p[0] != "status":
            continue
        if not subresource and has_status and p[0] == "status":
            continue
        out.add(p)
    return out


def _fv1_key(seg: str) -> str:
    return seg if seg.startswith("k:") else f"f:{seg}"


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for p in sorted(paths):
        node = root
        for k in p:
            node = node.setdefault(_fv1_key(k), {})
    return root


def from_fields_v1(doc: Any, prefix: Path = ()) -> set[Path]:
    if not isinstance(doc, dict):
        return set()
    kids = {k: v for k, v in doc.items() if k.startswith(("f:", "k:"))}
    if not kids:
        return {prefix} if prefix else set()
    out: set[Path] = set()
    for k, v in kids.items():
        out |= from_fields_v1(v, (*prefix, k if k.startswith("k:") else k[2:]))
    return out


def _overlaps(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _find(items: list[Any], seg: str) -> int | None:
    want = json.loads(seg[2:])
    for i, e in enumerate(items):
        if isinstance(e, dict) and all(e.get(k) == v for k, v in want.items()):
            return i
    return None


def get_path(obj: Any, path: Path) -> Any:
    for k in path:
        if k.startswith("k:") and isinstance(obj, list):
            i = _find(obj, k)
            if i is None:
                return _MISSING
            obj = obj[i]
        elif isinstance(obj, dict) and k in obj:
            obj = obj[k]
        else:
            return _MISSING
    return obj


def delete_path(obj: Any, path: Path) -> None:
    parent = get_path(obj, path[:-1])
    last = path[-1]
    if isinstance(parent, list) and last.startswith("k:"):
        i = _find(parent, last)
        if i is not None:
            del parent[i]
    elif isinstance(parent, dict):
        parent.pop(last, None)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def server_side_apply(
    live: dict[str, Any],
    applied: dict[str, Any],
    *,
    manager: str,
    subresource: str,
    force: bool,
    strategic: bool,
    has_status: bool,
    api_version: str,
    time: str,
) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` (managedFields updated).

    Raises:
        StatusError: 409 Conflict listing each field another manager owns, without force.
    """
    applied = _drop_nulls(applied)
    entries = [e for e in live.get("metadata", {}).get("managedFields") or []
               if isinstance(e, dict)]
    sub = subresource or ""

    def is_mine(e: dict[str, Any]) -> bool:
        return (e.get("manager") == manager and e.get("operation") == "Apply"
                and (e.get("subresource") or "") == sub)

    mine = next((e for e in entries if is_mine(e)), None)
    prev = from_fields_v1(mine.get("fieldsV1")) if mine else set()
    new = applied_paths(applied, sub, has_status, keyed=strategic)
    others = {
        i: from_fields_v1(e.get("fieldsV1"))
        for i, e in enumerate(entries)
        if not is_mine(e) and e.get("operation") == "Apply"
        and (e.get("subresource") or "") == sub
    }
    conflicts: list[tuple[Path, str]] = []
    for i, owned in others.items():
        for p in sorted(new):
            hits = [q for q in owned if _overlaps(p, q)]
            if hits and get_path(live, p) != get_path(applied, p):
                conflicts.append((p, str(entries[i].get("manager"))))
                if force:
                    owned.difference_update(hits)
    if conflicts and not force:
        causes = [{"reason": "FieldManagerConflict", "field": "." + ".".join(p),
                   "message": f'conflict with "{m}" using {api_version}'} for p, m in conflicts]
        listing = "\n".join(f'- {c["message"]}: {c["field"]}' for c in causes)
        raise StatusError(409, "Conflict",
                          f"Apply failed with {len(causes)} conflict(s):\n{listing}",
                          details={"causes": causes})
    merged = (strategic_merge_patch(live, applied) if strategic
              else json_merge_patch(live, applied))
    owned_by_others = set().union(*others.values()) if others else set()
    gone = prev - new
    # A keyed list element the manager no longer applies goes as a whole (it owned the
    # element, not only its leaves); then single fields it stopped sending.
    elements = {p[:i + 1] for p in gone for i, seg in enumerate(p) if seg.startswith("k:")}
    doomed = [e for e in elements if not any(q[:len(e)] == e for q in new)]
    for p in sorted(doomed, key=len) + sorted(gone, key=len, reverse=True):
        if not any(_overlaps(p, q) for q in owned_by_others):
            delete_path(merged, p)
    fields = to_fields_v1(new)
    new_entries: list[dict[str, Any]] = []
    for i, e in enumerate(entries):
        if is_mine(e):
            continue
        if i in others:
            e = {**e, "fieldsV1": to_fields_v1(others[i])}
        new_entries.append(e)
    entry: dict[str, Any]
    if mine is not None and mine.get("fieldsV1") == fields:
        entry = mine  # an unchanged apply keeps its timestamp, so the write is a no-op
    else:
        entry = {"manager": manager, "operation": "Apply", "apiVersion": api_version,
                 "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields}
        if sub:
            entry["subresource"] = sub
    new_entries.append(entry)
    merged.setdefault("metadata", {})["managedFields"] = copy.deepcopy(new_entries)
    return merged
