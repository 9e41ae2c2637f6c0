"""A CRD's structural OpenAPI v3 schema: pruning, defaulting and validation.

The real server, for every write of a custom resource, (1) prunes fields the schema does
not specify, (2) applies ``default`` values, (3) validates. This module does the same:

- Pruning keeps ``apiVersion``, ``kind`` and ``metadata`` at the root (and inside
  ``x-kubernetes-embedded-resource`` objects), keeps everything under
  ``x-kubernetes-preserve-unknown-fields: true`` (while still recursing into the
  properties it does specify), and recurses through ``properties``, ``additionalProperties``
  and ``items``. The pruned paths are returned so ``fieldValidation=Strict`` can reject
  them with the real server's "unknown field" error.
- Validation uses ``jsonschema`` (Draft 4: OpenAPI 3.0's dialect) on a converted copy:
  ``nullable`` becomes a ``null`` type, ``x-kubernetes-int-or-string`` becomes
  ``anyOf: [integer, string]``. Errors become 422 causes with the field path.
- Not covered: CEL ``x-kubernetes-validations`` (accepted and ignored), ``format``
  checks, list-type uniqueness (``x-kubernetes-list-type: set/map``) and ratcheting.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from ._errors import Cause

_ROOT_KEEP = ("apiVersion", "kind", "metadata")


class SchemaError(ValueError):
    """The CRD's schema itself is unusable (the CRD create is rejected)."""


class StructuralSchema:
    """One version's ``openAPIV3Schema`` ready to prune, default and validate objects."""

    def __init__(self, schema: dict[str, Any]) -> None:
        if not isinstance(schema, dict):
            raise SchemaError("openAPIV3Schema must be an object")
        self.schema = schema
        converted = _convert(copy.deepcopy(schema))
        props = converted.get("properties")
        if isinstance(props, dict):
            props.pop("metadata", None)  # ObjectMeta is validated by the server itself
        try:
            jsonschema.Draft4Validator.check_schema(converted)
        except jsonschema.SchemaError as exc:
            raise SchemaError(f"openAPIV3Schema is not a valid schema: {exc.message}") from None
        self._validator = jsonschema.Draft4Validator(converted)

    def __repr__(self) -> str:
        return f"StructuralSchema({sorted(self.schema.get('properties', {}))})"

    def prune(self, obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """A copy of ``obj`` without unspecified fields, and the dropped field paths."""
        dropped: list[str] = []
        out = _prune(obj, self.schema, "", dropped, root=True)
        return out, dropped

    def default(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with schema defaults filled in for absent fields."""
        return _default(copy.deepcopy(obj), self.schema)

    def validate(self, obj: dict[str, Any]) -> list[Cause]:
        """Every violation as a 422 cause, sorted by field."""
        causes = [_cause(e) for e in self._validator.iter_errors(obj)]
        return sorted(causes, key=lambda c: c.field)


def _convert(s: Any) -> Any:
    """OpenAPI v3 + Kubernetes extensions -> plain JSON Schema Draft 4."""
    if isinstance(s, list):
        return [_convert(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: _convert(v) for k, v in s.items() if not k.startswith("x-kubernetes-")}
    for key in ("properties", "patternProperties", "definitions"):
        if isinstance(s.get(key), dict):
            out[key] = {k: _convert(v) for k, v in s[key].items()}
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    out.pop("format", None)
    out.pop("example", None)
    out.pop("externalDocs", None)
    return out


def _prune(value: Any, schema: dict[str, Any], path: str, dropped: list[str], *,
           root: bool = False) -> Any:
    if not isinstance(schema, dict):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        if schema.get("x-kubernetes-int-or-string"):
            return copy.deepcopy(value)
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if (root or embedded) and k in _ROOT_KEEP:
                out[k] = copy.deepcopy(v)
            elif isinstance(props, dict) and k in props:
                out[k] = _prune(v, props[k], sub, dropped)
            elif isinstance(addl, dict):
                out[k] = _prune(v, addl, sub, dropped)
            elif preserve or addl is True:
                out[k] = copy.deepcopy(v)
            else:
                dropped.append(sub)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune(v, items, f"{path}[{i}]", dropped) for i, v in enumerate(value)]
        return copy.deepcopy(value)
    return value


def _default(value: Any, schema: dict[str, Any]) -> Any:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for k, sub in props.items():
                if k not in value and isinstance(sub, dict) and "default" in sub:
                    value[k] = copy.deepcopy(sub["default"])
                if k in value:
                    value[k] = _default(value[k], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in list(value):
                if not (isinstance(props, dict) and k in props):
                    value[k] = _default(value[k], addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_default(v, schema["items"]) for v in value]
    return value


def _field(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (dict, list)):
        return '"object"' if isinstance(value, dict) else '"array"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def _cause(err: jsonschema.ValidationError) -> Cause:
    fld = _field(err.absolute_path)
    match err.validator:
        case "required":
            missing = err.message.split("'")[1] if "'" in err.message else ""
            full = f"{fld}.{missing}" if fld else missing
            return Cause("FieldValueRequired", "Required value", full)
        case "enum":
            allowed = ", ".join(_show(v) for v in err.validator_value if v is not None)
            return Cause(
                "FieldValueNotSupported",
                f"Unsupported value: {_show(err.instance)}: supported values: {allowed}",
                fld,
            )
        case "type":
            want = err.validator_value
            want_s = want if isinstance(want, str) else "/".join(want)
            return Cause(
                "FieldValueTypeInvalid",
                f"Invalid value: {_show(err.instance)}: {fld or 'body'} in body must be of "
                f"type {want_s}: {_show(type(err.instance).__name__)}",
                fld,
            )
        case "pattern":
            return Cause(
                "FieldValueInvalid",
                f"Invalid value: {_show(err.instance)}: {fld} in body should match "
                f"'{err.validator_value}'",
                fld,
            )
        case _:
            return Cause("FieldValueInvalid", f"Invalid value: {_show(err.instance)}: "
                         f"{err.message}", fld)
