"""Object metadata rules: name formats, timestamps, and which resource needs which name rule.

Pure: the clock is passed in.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

from ._errors import Cause

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

#: storage keys whose names must be DNS-1123 labels (the rest: DNS-1123 subdomains).
LABEL_NAMED = frozenset({"/namespaces"})
#: storage keys whose names must be DNS-1035 labels.
DNS1035_NAMED = frozenset({"/services"})
#: storage keys that accept any path-segment-safe name (RBAC objects allow ':' etc.).
PATH_SEGMENT_NAMED = frozenset({
    "rbac.authorization.k8s.io/roles", "rbac.authorization.k8s.io/clusterroles",
    "rbac.authorization.k8s.io/rolebindings", "rbac.authorization.k8s.io/clusterrolebindings",
})


def name_problems(storage_key: str, name: str) -> list[str]:
    """Why ``name`` is not a valid name for that resource (empty list: valid)."""
    if storage_key in PATH_SEGMENT_NAMED:
        if name in (".", "..") or "/" in name or "%" in name:
            return ['may not contain "/" or "%", and may not be "." or ".."']
        return []
    if storage_key in DNS1035_NAMED:
        if len(name) > 63:
            return ["must be no more than 63 characters"]
        if not _DNS1035_LABEL.match(name):
            return [
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character "
                "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
                "'[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        return []
    if storage_key in LABEL_NAMED:
        if len(name) > 63:
            return ["must be no more than 63 characters"]
        if not _DNS1123_LABEL.match(name):
            return [
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
                "  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        return []
    if len(name) > 253:
        return ["must be no more than 253 characters"]
    if not _DNS1123_SUBDOMAIN.match(name):
        return [
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    return []


def name_causes(storage_key: str, name: str, fld: str = "metadata.name") -> list[Cause]:
    return [
        Cause("FieldValueInvalid", f'Invalid value: "{name}": {p}', fld)
        for p in name_problems(storage_key, name)
    ]


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC at second precision, as metav1.Time serializes."""
    return _timestamp_of_second(int(now.timestamp()))


@functools.lru_cache(maxsize=4)
def _timestamp_of_second(second: int) -> str:
    # Formatting is a tenth of a create's cost; within one second it is always the same.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def human_age(seconds: float) -> str:
    """kubectl's duration style ("5s", "3m", "2d")."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"
