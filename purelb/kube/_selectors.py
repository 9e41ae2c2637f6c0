"""Encode label and field selectors for the ``labelSelector``/``fieldSelector`` parameters.

Callers pass a ready string, a ``{key: value}`` mapping (equality), or a Kubernetes
``LabelSelector`` dict (``matchLabels`` + ``matchExpressions``). Keys and values are
checked here so a bad selector fails at the call site with its value, not as a 400
from the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

LabelSelectorInput = str | Mapping[str, Any]

#: Label value syntax (RFC 1123-ish, 63 chars); empty is allowed.
_VALUE_RE = re.compile(r"^(|[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
#: Label key: optional DNS-subdomain prefix and a name part.
_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
#: Field selector paths and values: no selector syntax characters inside.
_FIELD_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]]+$")

_OPERATORS = {"In": "in", "NotIn": "notin"}


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"label key must be a str, got {key!r}")
    prefix, _, name = key.rpartition("/")
    if not _NAME_RE.match(name) or (prefix and not _PREFIX_RE.match(prefix)):
        raise ValueError(f"label key {key!r} is not a valid label name ([prefix/]name, 63 chars)")
    return key


def _check_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"label value for {key!r} must be a str, got {value!r}")
    if not _VALUE_RE.match(value):
        raise ValueError(f"label value {value!r} for key {key!r} is not a valid label value")
    return value


def encode_label_selector(selector: LabelSelectorInput) -> str:
    """Return the query-string form of a label selector.

    >>> encode_label_selector({"app": "web", "tier": "db"})
    'app=web,tier=db'
    >>> encode_label_selector({"matchExpressions": [{"key": "a", "operator": "Exists"}]})
    'a'
    """
    if isinstance(selector, str):
        return selector
    if not isinstance(selector, Mapping):
        raise TypeError(f"label selector must be a str or a mapping, got {selector!r}")
    if set(selector) <= {"matchLabels", "matchExpressions"} and selector:
        labels = selector.get("matchLabels") or {}
        exprs = selector.get("matchExpressions") or []
    else:
        labels, exprs = selector, []
    parts = [f"{_check_key(k)}={_check_value(k, v)}" for k, v in labels.items()]
    for expr in exprs:
        parts.append(_encode_expression(expr))
    return ",".join(parts)


def _encode_expression(expr: Any) -> str:
    if not isinstance(expr, Mapping):
        raise TypeError(f"matchExpressions entry must be a mapping, got {expr!r}")
    key = _check_key(expr.get("key"))
    op = expr.get("operator")
    values = expr.get("values") or []
    if op in _OPERATORS:
        if not values:
            raise ValueError(f"matchExpressions {key!r} {op} needs at least one value")
        vals = ",".join(sorted(_check_value(key, v) for v in values))
        return f"{key} {_OPERATORS[op]} ({vals})"
    if op in ("Exists", "DoesNotExist"):
        if values:
            raise ValueError(f"matchExpressions {key!r} {op} must not have values, got {values!r}")
        return key if op == "Exists" else f"!{key}"
    raise ValueError(
        f"matchExpressions operator {op!r} for {key!r} is not one of "
        "In, NotIn, Exists, DoesNotExist"
    )


def encode_field_selector(selector: str | Mapping[str, str]) -> str:
    """Return the query-string form of a field selector (equality only from a mapping).

    >>> encode_field_selector({"metadata.name": "x"})
    'metadata.name=x'
    """
    if isinstance(selector, str):
        return selector
    if not isinstance(selector, Mapping):
        raise TypeError(f"field selector must be a str or a mapping, got {selector!r}")
    parts = []
    for key, value in selector.items():
        if not isinstance(key, str) or not _FIELD_KEY_RE.match(key):
            raise ValueError(f"field selector key {key!r} is not a field path like metadata.name")
        if not isinstance(value, str) or any(c in value for c in ",=!\\"):
            raise ValueError(
                f"field selector value {value!r} for {key!r} must be a str without , = ! or \\"
            )
        parts.append(f"{key}={value}")
    return ",".join(parts)
