"""LBNodeAgent (``purelb.io/v1``) as a validated, frozen view, and the pick among several.

Fields (deploy/crds/lbnodeagent.yaml; PureLB's legacy v1 names plus our additions)::

    spec.local.localint       "default" (default-route NIC per family) or a regex
    spec.local.extlbint       the virtual interface, default kube-lb0
    spec.local.extlbintKind   dummy (default) | ifb | existing          (ours)
    spec.local.sendgarp       announce won local addresses (default false, as PureLB v1)
    spec.local.garpCount      announcements per won address, 1..10       (ours)
    spec.local.garpInterval   seconds between them, "500ms" / "1s" / 0.5  (ours)
    spec.local.addressConfig.localInterface {validLifetime, preferredLifetime, noPrefixRoute}

The view converts to :class:`purelb.agent.AgentSettings` with :meth:`LBNodeAgentConfig.settings`
so the agent's I/O code never reads the raw object. Several LBNodeAgents: the first by
``namespace/name`` wins (PureLB v1 took an arbitrary one); node selectors are not evaluated
(the agent does not read Node objects) and are reported as unsupported by the caller.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from purelb.agent.settings import AgentSettings, VirtualKind
from purelb.model import _fields as f
from purelb.model._errors import InvalidField, Reason

API_VERSION = "purelb.io/v1"
KIND = "LBNodeAgent"
DEFAULT_LOCAL_INTERFACE = "default"
DEFAULT_VIRTUAL_INTERFACE = "kube-lb0"
#: PureLB clamps garpConfig.count to 1..10: more only floods the LAN during a failover.
MAX_GARP_COUNT = 10
#: Longest accepted pause between announcements; longer ones outlive the ARP caches they fix.
MAX_GARP_INTERVAL_S = 10.0
#: PureLB raises a non-zero lifetime below 60 s to 60 s; we refuse it instead (an address
#: refreshed every reconcile with a tiny lifetime flaps when one reconcile is late).
MIN_LIFETIME_S = 60
_IFNAME_RE = re.compile(r"^[^/\s]{1,15}$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class LBNodeAgentConfig:
    """A validated LBNodeAgent's ``spec.local``."""

    name: str = "default"
    namespace: str = ""
    local_interface: str = DEFAULT_LOCAL_INTERFACE
    """``default`` or a regular expression (compiled once here, so it is known valid)."""
    virtual_interface: str = DEFAULT_VIRTUAL_INTERFACE
    virtual_kind: VirtualKind = VirtualKind.DUMMY
    send_garp: bool = False
    garp_count: int | None = None
    """None: the agent's default count (used only when ``send_garp``)."""
    garp_interval_s: float | None = None
    local_valid_lifetime_s: int | None = None
    """None: the agent's default; 0 in the object means permanent and is kept as 0."""
    local_noprefixroute: bool | None = None
    has_node_selector: bool = False

    def settings(self, base: AgentSettings) -> AgentSettings:
        """``base`` with this configuration applied (GARP off unless ``send_garp``)."""
        changes: dict[str, Any] = {
            "virtual_interface": self.virtual_interface,
            "virtual_kind": self.virtual_kind,
            "garp_count": (self.garp_count or base.garp_count) if self.send_garp else 0,
        }
        if self.garp_interval_s is not None:
            changes["garp_interval_s"] = self.garp_interval_s
        if self.local_valid_lifetime_s is not None:
            changes["local_valid_lft_s"] = self.local_valid_lifetime_s or None
        if self.local_noprefixroute is not None:
            changes["noprefixroute"] = self.local_noprefixroute
        return dataclasses.replace(base, **changes)


def parse_duration_s(value: object, path: str) -> float:
    """``0.5``, ``"500ms"``, ``"1s"`` or ``"2"`` -> seconds."""
    if isinstance(value, bool):
        raise InvalidField(Reason.WRONG_TYPE, "must be a duration", path=path, value=value)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value.strip())):
        seconds = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    else:
        raise InvalidField(Reason.WRONG_TYPE, 'must be seconds or a duration like "500ms"',
                           path=path, value=value)
    if not 0 <= seconds <= MAX_GARP_INTERVAL_S:
        raise InvalidField(Reason.WRONG_TYPE, f"must be within 0..{MAX_GARP_INTERVAL_S:g} s",
                           path=path, value=value)
    return seconds


def _int(value: object, path: str, lo: int, hi: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidField(Reason.WRONG_TYPE, f"must be an integer {lo}..{hi}", path=path,
                           value=value)
    return value


def parse_lbnodeagent(obj: Mapping[str, Any]) -> LBNodeAgentConfig:
    """Parse an LBNodeAgent object or raise :class:`InvalidField` naming the field."""
    top = f.mapping(obj, "")
    meta = f.mapping(top.get("metadata"), "metadata")
    spec = f.mapping(top.get("spec"), "spec")
    local = f.mapping(spec.get("local"), "spec.local")
    localint = f.string(local.get("localint"), "spec.local.localint") or DEFAULT_LOCAL_INTERFACE
    if localint != DEFAULT_LOCAL_INTERFACE:
        try:
            re.compile(localint)
        except re.error as exc:
            raise InvalidField(Reason.WRONG_TYPE, f"is not a regular expression ({exc})",
                               path="spec.local.localint", value=localint) from None
    extlbint = (f.string(local.get("extlbint"), "spec.local.extlbint")
                or DEFAULT_VIRTUAL_INTERFACE)
    if not _IFNAME_RE.match(extlbint):
        raise InvalidField(Reason.INVALID_NAME, "must be an interface name of 1-15 characters "
                           "without '/' or spaces", path="spec.local.extlbint", value=extlbint)
    kind_raw = f.string(local.get("extlbintKind"), "spec.local.extlbintKind") or "dummy"
    try:
        kind = VirtualKind(kind_raw)
    except ValueError:
        raise InvalidField(Reason.WRONG_TYPE,
                           f"must be one of {[k.value for k in VirtualKind]}",
                           path="spec.local.extlbintKind", value=kind_raw) from None
    interval = local.get("garpInterval")
    addr_cfg = f.mapping(local.get("addressConfig"), "spec.local.addressConfig", required=False)
    nic = f.mapping(addr_cfg.get("localInterface"), "spec.local.addressConfig.localInterface",
                    required=False)
    valid = _int(nic.get("validLifetime"), "spec.local.addressConfig.localInterface."
                 "validLifetime", 0, 0xFFFFFFFE)
    if valid is not None and 0 < valid < MIN_LIFETIME_S:
        raise InvalidField(Reason.WRONG_TYPE, f"must be 0 (permanent) or >= {MIN_LIFETIME_S} s",
                           path="spec.local.addressConfig.localInterface.validLifetime",
                           value=valid)
    npr = nic.get("noPrefixRoute")
    return LBNodeAgentConfig(
        name=f.string(meta.get("name"), "metadata.name", required=True) or "",
        namespace=f.string(meta.get("namespace"), "metadata.namespace") or "",
        local_interface=localint,
        virtual_interface=extlbint,
        virtual_kind=kind,
        send_garp=f.boolean(local.get("sendgarp"), "spec.local.sendgarp", default=False),
        garp_count=_int(local.get("garpCount"), "spec.local.garpCount", 1, MAX_GARP_COUNT),
        garp_interval_s=None if interval is None
        else parse_duration_s(interval, "spec.local.garpInterval"),
        local_valid_lifetime_s=valid,
        local_noprefixroute=None if npr is None else f.boolean(
            npr, "spec.local.addressConfig.localInterface.noPrefixRoute", default=True),
        has_node_selector=bool(spec.get("nodeSelector")),
    )


@dataclass(frozen=True, slots=True)
class AgentConfigChoice:
    """The configuration that applies, and why the others do not."""

    config: LBNodeAgentConfig | None
    """None: no usable LBNodeAgent; the agent then withdraws everything (PureLB does)."""
    ignored: tuple[tuple[str, str], ...]
    """``(namespace/name, reason)`` for every other object, for Events and logs."""


def choose_config(objects: Iterable[Mapping[str, Any]]) -> AgentConfigChoice:
    """The first valid LBNodeAgent by ``namespace/name``; invalid ones are reported."""
    ignored: list[tuple[str, str]] = []
    chosen: LBNodeAgentConfig | None = None

    def key(o: Mapping[str, Any]) -> str:
        meta = o.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    for obj in sorted(objects, key=key):
        try:
            cfg = parse_lbnodeagent(obj)
        except InvalidField as exc:
            ignored.append((key(obj), f"invalid: {exc}"))
            continue
        if chosen is None:
            chosen = cfg
        else:
            ignored.append((key(obj), f"{chosen.namespace}/{chosen.name} applies (first by name)"))
    return AgentConfigChoice(chosen, tuple(ignored))
