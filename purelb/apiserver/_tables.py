"""Server-side Table rendering (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).

kubectl's human-readable ``get`` asks for Tables; the server chooses the columns and
renders cells, including Age (kubectl.md §5). Built-in kinds get the columns the real
server prints for them; custom resources get Name, their ``additionalPrinterColumns``
(evaluated with :func:`jsonpath`), and Age.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ._meta import human_age, parse_timestamp
from ._resources import ResourceDef

Column = dict[str, Any]
CellFn = Callable[[dict[str, Any], datetime], Any]


def _col(name: str, typ: str = "string", *, fmt: str = "", priority: int = 0,
         description: str = "") -> Column:
    return {"name": name, "type": typ, "format": fmt, "description": description,
            "priority": priority}


def _age(obj: dict[str, Any], now: datetime) -> str:
    ts = parse_timestamp(obj.get("metadata", {}).get("creationTimestamp", ""))
    return "<unknown>" if ts is None else human_age((now - ts).total_seconds())


def _event_age(obj: dict[str, Any], now: datetime) -> str:
    """Age of an Event's last occurrence (lastTimestamp, eventTime, or creation)."""
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        ts = parse_timestamp(str(obj.get(key) or "").split(".")[0].rstrip("Z") + "Z")
        if ts is not None:
            return human_age((now - ts).total_seconds())
    return _age(obj, now)


def _name(obj: dict[str, Any], _now: datetime) -> str:
    return obj.get("metadata", {}).get("name", "")


def _svc_external(obj: dict[str, Any], _now: datetime) -> str:
    spec = obj.get("spec", {})
    ingress = obj.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    ips = [i.get("ip") or i.get("hostname") for i in ingress if isinstance(i, dict)]
    ips += spec.get("externalIPs") or []
    if ips:
        return ",".join(str(i) for i in ips if i)
    if spec.get("type") == "LoadBalancer":
        return "<pending>"
    if spec.get("type") == "ExternalName":
        return spec.get("externalName", "")
    return "<none>"


def _svc_ports(obj: dict[str, Any], _now: datetime) -> str:
    out = []
    for p in obj.get("spec", {}).get("ports") or []:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _svc_selector(obj: dict[str, Any], _now: datetime) -> str:
    sel = obj.get("spec", {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


def _path(*keys: str, default: str = "<none>") -> CellFn:
    def cell(obj: dict[str, Any], _now: datetime) -> Any:
        cur: Any = obj
        for k in keys:
            cur = cur.get(k) if isinstance(cur, dict) else None
        return default if cur in (None, "") else cur
    return cell


def _count(key: str) -> CellFn:
    def cell(obj: dict[str, Any], _now: datetime) -> int:
        return len(obj.get(key) or {}) + (len(obj.get("binaryData") or {}) if key == "data" else 0)
    return cell


_NAME = (_col("Name", fmt="name", description="Name must be unique within a namespace."), _name)
_AGE = (_col("Age", description="CreationTimestamp is a timestamp representing the server "
             "time when this object was created."), _age)

_BUILTIN_COLUMNS: dict[str, list[tuple[Column, CellFn]]] = {
    "/services": [
        _NAME, (_col("Type"), _path("spec", "type")),
        (_col("Cluster-IP"), _path("spec", "clusterIP")),
        (_col("External-IP"), _svc_external), (_col("Port(s)"), _svc_ports), _AGE,
        (_col("Selector", priority=1), _svc_selector),
    ],
    "/namespaces": [_NAME, (_col("Status"), _path("status", "phase", default="")), _AGE],
    "/configmaps": [_NAME, (_col("Data", "integer"), _count("data")), _AGE],
    "/secrets": [_NAME, (_col("Type"), _path("type", default="")),
                 (_col("Data", "integer"), _count("data")), _AGE],
    "/pods": [_NAME, (_col("Status"), _path("status", "phase", default="")),
              (_col("Node", priority=1), _path("spec", "nodeName")), _AGE],
    "/nodes": [_NAME, _AGE],
    "coordination.k8s.io/leases": [_NAME, (_col("Holder"), _path("spec", "holderIdentity",
                                                                   default="")), _AGE],
    "apps/deployments": [_NAME, (_col("Replicas", "integer"), _path("spec", "replicas",
                                                                     default="1")), _AGE],
    "apiextensions.k8s.io/customresourcedefinitions": [
        _NAME, (_col("Created At", fmt="date-time"), _path("metadata", "creationTimestamp")),
    ],
    "/events": [
        (_col("Last Seen"), _event_age),
        (_col("Type"), _path("type", default="")), (_col("Reason"), _path("reason", default="")),
        (_col("Object"), lambda o, _n: "{}/{}".format(
            str(o.get("involvedObject", {}).get("kind", "")).lower(),
            o.get("involvedObject", {}).get("name", ""))),
        (_col("Message"), _path("message", default="")),
    ],
}


def columns_for(rdef: ResourceDef) -> list[tuple[Column, CellFn]]:
    if rdef.crd_name:
        cols: list[tuple[Column, CellFn]] = [_NAME]
        for c in rdef.printer_columns:
            col = _col(c["name"], c.get("type", "string"), fmt=c.get("format", ""),
                       priority=int(c.get("priority", 0)),
                       description=c.get("description", ""))
            cols.append((col, _jsonpath_cell(c["jsonPath"], c.get("type", "string"))))
        if not any(c.get("jsonPath") == ".metadata.creationTimestamp"
                   for c in rdef.printer_columns):
            cols.append(_AGE)
        return cols
    return _BUILTIN_COLUMNS.get(rdef.storage_key, [_NAME, _AGE])


def _jsonpath_cell(expr: str, typ: str) -> CellFn:
    def cell(obj: dict[str, Any], now: datetime) -> Any:
        vals = jsonpath(obj, expr)
        if not vals:
            return None
        if typ == "date":
            ts = parse_timestamp(str(vals[0]))
            return human_age((now - ts).total_seconds()) if ts else str(vals[0])
        if len(vals) == 1:
            return vals[0] if typ in ("integer", "number", "boolean") else _fmt(vals[0])
        return ",".join(_fmt(v) for v in vals)
    return cell


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


_TOKEN = re.compile(
    r"\.(?P<name>[A-Za-z0-9_\-/]+)"
    r"|\[(?P<index>-?\d+|\*)\]"
    r"|\[\?\(@\.(?P<fkey>[A-Za-z0-9_\-.]+)\s*==\s*['\"](?P<fval>[^'\"]*)['\"]\)\]"
)


def jsonpath(obj: Any, expr: str) -> list[Any]:
    """A kubectl-style JSONPath subset: ``.a.b``, ``[0]``, ``[*]``, ``[?(@.k=="v")]``."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    cur = [obj]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for c in cur:
            if m.group("name") is not None:
                if isinstance(c, dict) and m.group("name") in c:
                    nxt.append(c[m.group("name")])
                elif isinstance(c, list):
                    nxt.extend(e[m.group("name")] for e in c
                               if isinstance(e, dict) and m.group("name") in e)
            elif m.group("index") is not None:
                if isinstance(c, list):
                    if m.group("index") == "*":
                        nxt.extend(c)
                    else:
                        i = int(m.group("index"))
                        if -len(c) <= i < len(c):
                            nxt.append(c[i])
                elif isinstance(c, dict) and m.group("index") == "*":
                    nxt.extend(c.values())
            elif isinstance(c, list):
                key, val = m.group("fkey"), m.group("fval")
                nxt.extend(e for e in c if isinstance(e, dict)
                           and str(_dig(e, key.split("."))) == val)
        cur = nxt
    return cur


def _dig(obj: Any, keys: list[str]) -> Any:
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def render_table(
    rdef: ResourceDef,
    objects: list[dict[str, Any]],
    *,
    now: datetime,
    resource_version: str,
    include_object: str = "Metadata",
    with_columns: bool = True,
    continue_token: str = "",
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table; rows carry PartialObjectMetadata (or the object)."""
    cols = columns_for(rdef)
    rows = []
    for obj in objects:
        cells = [fn(obj, now) for _, fn in cols]
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial(obj)
        rows.append(row)
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    table: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    table["columnDefinitions"] = [c for c, _ in cols] if with_columns else []
    table["rows"] = rows
    return table
