"""Label and field selectors, parsed once per request and matched against objects.

Pure: no I/O. The grammar is the one ``k8s.io/apimachinery/pkg/labels`` accepts:
``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists),
``!a`` (does not exist), ``a>1``, ``a<1``, comma-separated and ANDed. Field selectors
accept ``=``, ``==`` and ``!=`` on the field labels a resource supports (always
``metadata.name`` and ``metadata.namespace``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class SelectorError(ValueError):
    """The selector text does not parse; the message names the offending part."""


class Op(Enum):
    """One label requirement's operator."""

    EQ = "="
    NEQ = "!="
    IN = "in"
    NOTIN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"
    GT = ">"
    LT = "<"


_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case Op.EXISTS:
                return present
            case Op.NOT_EXISTS:
                return not present
            case Op.EQ | Op.IN:
                return present and value in self.values
            case Op.NEQ | Op.NOTIN:
                return not present or value not in self.values
            case Op.GT | Op.LT:
                if not present:
                    return False
                try:
                    have = int(str(value))
                except ValueError:
                    return False
                want = int(self.values[0])
                return have > want if self.op is Op.GT else have < want
        raise AssertionError(f"unhandled operator {self.op}; this is a bug")


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append("".join(cur))
    return parts


def _check_key(key: str, text: str) -> str:
    if not key or not _KEY_RE.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_RE = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*?)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``labelSelector=`` text.

    Raises:
        SelectorError: with the offending requirement named.
    """
    if text is None or not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        if m := _SET_RE.match(part):
            key = _check_key(m.group(1), text)
            vals = tuple(_check_value(v.strip(), text) for v in m.group(3).split(","))
            op = Op.IN if m.group(2) == "in" else Op.NOTIN
            reqs.append(Requirement(key, op, vals))
        elif m := _CMP_RE.match(part):
            key = _check_key(m.group(1), text)
            sym, value = m.group(2), m.group(3)
            if sym in ("<", ">"):
                try:
                    int(value)
                except ValueError:
                    raise SelectorError(
                        f"value {value!r} for {sym} in selector {text!r} must be an integer"
                    ) from None
                reqs.append(Requirement(key, Op.GT if sym == ">" else Op.LT, (value,)))
            else:
                op = Op.NEQ if sym == "!=" else Op.EQ
                reqs.append(Requirement(key, op, (_check_value(value, text),)))
        elif part.startswith("!"):
            reqs.append(Requirement(_check_key(part[1:].strip(), text), Op.NOT_EXISTS))
        else:
            reqs.append(Requirement(_check_key(part, text), Op.EXISTS))
    return LabelSelector(tuple(reqs))


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    path: str
    value: str
    negate: bool


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for r in self.requirements:
            have = field_value(obj, r.path)
            if (have == r.value) == r.negate:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value of a dotted field path (``""`` when absent, as the server does)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return ""
        cur = cur[part]
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, supported: Iterable[str]) -> FieldSelector:
    """Parse ``fieldSelector=`` text against the resource's supported field labels.

    Raises:
        SelectorError: an unparsable requirement or an unsupported field label.
    """
    if text is None or not text.strip():
        return FieldSelector()
    allowed = set(supported)
    reqs: list[FieldRequirement] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise SelectorError(f"invalid field selector requirement {part!r}")
        path, sym, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if path not in allowed:
            raise SelectorError(f'field label not supported: {path}')
        reqs.append(FieldRequirement(path, value, sym == "!="))
    return FieldSelector(tuple(reqs))
