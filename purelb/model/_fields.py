"""Typed reads from raw Kubernetes JSON, each failure naming its field path.

Parsing happens once at the edge; everything after works on frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from purelb.model._errors import InvalidField, Reason

_MISSING = object()


def mapping(value: object, path: str, *, required: bool = True) -> Mapping[str, Any]:
    """``value`` as a mapping; ``None`` is an empty mapping unless ``required``."""
    if value is None or value is _MISSING:
        if required:
            raise InvalidField(Reason.REQUIRED, "is required", path=path, value=None)
        return {}
    if not isinstance(value, Mapping):
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be an object, not {type(value).__name__}", path=path,
            value=value,
        )
    return value


def sequence(value: object, path: str) -> list[Any]:
    """``value`` as a list; ``None`` is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be a list, not {type(value).__name__}", path=path,
            value=value,
        )
    return list(value)


def string(value: object, path: str, *, required: bool = False) -> str | None:
    """``value`` as a stripped string; missing or empty is ``None`` unless ``required``."""
    if value is None:
        if required:
            raise InvalidField(Reason.REQUIRED, "is required", path=path, value=None)
        return None
    if not isinstance(value, str):
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be a string, not {type(value).__name__}", path=path,
            value=value,
        )
    text = value.strip()
    if not text:
        if required:
            raise InvalidField(Reason.REQUIRED, "must not be empty", path=path, value=value)
        return None
    return text


def boolean(value: object, path: str, *, default: bool) -> bool:
    """``value`` as a JSON boolean; missing is ``default``."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidField(
            Reason.WRONG_TYPE, f"must be true or false, not {type(value).__name__}", path=path,
            value=value,
        )
    return value


def string_map(value: object, path: str) -> dict[str, str]:
    """A ``{str: str}`` mapping such as ``metadata.annotations``."""
    raw = mapping(value, path, required=False)
    out: dict[str, str] = {}
    for key, item in raw.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidField(
                Reason.WRONG_TYPE, "keys and values must be strings", path=f"{path}[{key}]",
                value=item,
            )
        out[key] = item
    return out
