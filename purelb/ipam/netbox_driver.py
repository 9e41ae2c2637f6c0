"""The I/O half of NetBox ServiceGroups: turns allocator decisions into NetBox calls.

The allocator (pure) never talks to NetBox. For a NetBox group it answers
``PENDING_EXTERNAL`` with an :class:`~purelb.ipam.decision.ExternalRequest`; this driver
takes the address in NetBox for that Service (next free of the prefix, a specific address,
or a legacy ``reserved`` one), offers it to the allocator and names the Services to
reconcile again. Addresses the allocator releases (``pool_type == netbox``) are given back
(deleted, or legacy: set ``reserved`` again). A release that fails because NetBox is down is
kept and retried on the next call -- nothing is lost. Only the leading allocator may drive
this (it is the only writer).

Failures become values for the daemon, never exceptions: a :class:`DriverResult` carries
the Events for the Service, a failure reason and when to try again; a bad token or a
missing prefix also sets :attr:`NetboxDriver.problems` (a ServiceGroup condition).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from purelb.ipam.allocator import Allocator
from purelb.ipam.decision import (
    Decision,
    Event,
    EventType,
    ExternalRequest,
    FailureReason,
    Outcome,
    Released,
)
from purelb.ipam.netbox import (
    NetboxAuthError,
    NetboxClient,
    NetboxConflict,
    NetboxError,
    NetboxExhausted,
    NetboxMetrics,
    NetboxNotFound,
    NetboxUnavailable,
    RetryPolicy,
)
from purelb.ipam.netbox_records import IPRecord, Owner, Prefix
from purelb.ipam.netbox_sync import plan_sync
from purelb.model import IPAddress, PoolType, Service, ServiceGroup, ServiceKey

#: a Service waiting on an unreachable NetBox is reconciled again after this long (the
#: client already retried with backoff inside one call)
UNAVAILABLE_RETRY_S = 5.0
#: a refused token, an exhausted prefix or a taken address need a human or a release
#: elsewhere in NetBox; look again this often
SLOW_RETRY_S = 60.0


@dataclass(frozen=True, slots=True)
class GroupProblem:
    """Why a NetBox ServiceGroup cannot allocate (for its status condition)."""

    reason: str
    """``unauthorized``, ``missing_token``, ``not_found``, ``bad_request``."""
    message: str


@dataclass(slots=True)
class DriverResult:
    """What the daemon does after the driver handled one decision."""

    requeue: set[ServiceKey] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    failure: FailureReason | None = None
    retry_after: float | None = None
    """Reconcile the Service again after this many seconds (``None``: not needed)."""


@dataclass(slots=True)
class SyncReport:
    released: list[IPAddress] = field(default_factory=list)
    reclaimed: list[IPAddress] = field(default_factory=list)
    relabelled: list[IPAddress] = field(default_factory=list)
    events: dict[ServiceKey, list[Event]] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)
    """Groups whose NetBox could not be read (down, token refused): sync again later."""


@dataclass(slots=True)
class _GroupState:
    group: ServiceGroup
    client: NetboxClient
    token: str
    prefixes: dict[int, Prefix] = field(default_factory=dict)

    @property
    def legacy(self) -> bool:
        assert self.group.netbox is not None
        return not self.group.netbox.has_prefix

    @property
    def tenant(self) -> str:
        assert self.group.netbox is not None
        return self.group.netbox.tenant


TokenSource = Callable[[ServiceGroup], "str | None"]
"""The API token of a group (the daemon reads ``tokenSecretRef`` from its Secret)."""


class NetboxDriver:
    """NetBox I/O for every ``spec.netbox`` group of one allocator."""

    @property
    def needs_token(self) -> bool:
        """A group's token is missing or was refused: the daemon should read it again."""
        return any(p.reason in ("unauthorized", "missing_token") for p in self.problems.values())

    def __init__(
        self,
        token_for: TokenSource,
        *,
        metrics: NetboxMetrics | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._token_for = token_for
        self._metrics = metrics
        self._retry = retry
        self._clients: dict[tuple[str, str], NetboxClient] = {}
        self._groups: dict[str, _GroupState] = {}
        self._records: dict[IPAddress, IPRecord] = {}
        self._named: dict[ServiceKey, set[IPAddress]] = {}
        """Service -> the cached records whose description names it (for relabelling)."""
        self._unreleased: dict[IPAddress, Released] = {}
        self._last_release_try = -math.inf
        self.problems: dict[str, GroupProblem] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # ------------------------------------------------------------------ config

    def configure(self, groups: Iterable[ServiceGroup]) -> None:
        """Use these groups from now on (call after every ``Allocator.set_config``)."""
        new: dict[str, _GroupState] = {}
        for group in groups:
            if group.netbox is None:
                continue
            token = self._token_for(group)
            old = self._groups.get(group.name)
            if old is not None and old.group == group and old.token == token:
                new[group.name] = old
                continue
            self.problems.pop(group.name, None)
            if not token:
                ref = group.netbox.token_secret_ref
                where = f"Secret {ref.name!r} key {ref.key!r}" if ref else "the default Secret"
                self.problems[group.name] = GroupProblem(
                    "missing_token", f"ServiceGroup {group.name!r}: no NetBox token in {where}"
                )
                continue
            url = group.netbox.url
            client = self._clients.get((url, token))
            if client is None:
                client = NetboxClient(url, token, metrics=self._metrics, retry=self._retry)
                self._clients[(url, token)] = client
            new[group.name] = _GroupState(group, client, token)
        self._groups = new

    async def _prefix(self, state: _GroupState, family: int) -> Prefix | None:
        spec = state.group.netbox
        assert spec is not None
        wanted = spec.prefix_ref(family)
        if wanted is None:
            return None
        if family not in state.prefixes:
            state.prefixes[family] = await state.client.prefix(wanted)
        return state.prefixes[family]

    # ------------------------------------------------------------------ decisions

    async def handle(
        self, alloc: Allocator, decision: Decision, svc: Service | None
    ) -> DriverResult:
        """After ``alloc.reconcile``/``release``: return released addresses, fulfil
        external requests, keep NetBox's owner names right."""
        result = DriverResult()
        await self._release_all([r for r in decision.released if r.pool_type is PoolType.NETBOX])
        if decision.outcome is Outcome.PENDING_EXTERNAL and svc is not None:
            for request in decision.external_requests:
                await self._fulfil(alloc, request, svc, result)
        elif decision.outcome is Outcome.OK and svc is not None:
            await self._relabel_held(alloc, svc)
        await self._hand_over(alloc, decision.service)
        if self._unreleased and result.retry_after is None:
            result.retry_after = UNAVAILABLE_RETRY_S
        return result

    async def _fulfil(
        self, alloc: Allocator, request: ExternalRequest, svc: Service, result: DriverResult
    ) -> None:
        group = request.group
        state = self._groups.get(group)
        if state is None:
            problem = self.problems.get(group)
            text = problem.message if problem else f"ServiceGroup {group!r} has no NetBox client"
            self._warn(result, "NetboxError", f"Service {svc.key}: {text}", SLOW_RETRY_S)
            return
        owner = Owner(svc.key, svc.uid)
        try:
            prefix = await self._prefix(state, request.family)
            if request.address is not None:
                record = await state.client.claim(
                    request.address, owner, state.tenant, prefix=prefix
                )
                result.requeue |= set(alloc.offer_specific(group, record.address))
            else:
                if prefix is not None:
                    record = await state.client.allocate(prefix, owner, state.tenant)
                else:
                    record = await state.client.claim_reserved(
                        owner, state.tenant, family=request.family
                    )
                result.requeue |= set(alloc.offer_external(group, [record.address]))
        except NetboxAuthError as exc:
            self.problems[group] = GroupProblem("unauthorized", str(exc))
            self._warn(result, "NetboxError", f"Service {svc.key}: {exc}", SLOW_RETRY_S)
            return
        except NetboxUnavailable as exc:
            self._warn(
                result,
                "NetboxUnavailable",
                f"Service {svc.key}: waiting for NetBox: {exc}",
                UNAVAILABLE_RETRY_S,
            )
            return
        except NetboxExhausted as exc:
            result.failure = FailureReason.EXHAUSTED
            self._warn(result, "AllocationFailed", f"Service {svc.key}: {exc}", SLOW_RETRY_S)
            return
        except NetboxConflict as exc:
            result.failure = FailureReason.ADDRESS_IN_USE
            self._warn(result, "AllocationFailed", f"Service {svc.key}: {exc}", SLOW_RETRY_S)
            return
        except NetboxError as exc:  # unknown prefix or tenant: the group's config is wrong
            self.problems[group] = GroupProblem(exc.reason, str(exc))
            self._warn(result, "NetboxError", f"Service {svc.key}: {exc}", SLOW_RETRY_S)
            return
        self.problems.pop(group, None)
        if alloc.holders(record.address):
            # a retried POST found a record still named after this Service that another
            # Service took meanwhile: not a new address; try again shortly
            result.retry_after = min(UNAVAILABLE_RETRY_S, result.retry_after or math.inf)
            return
        self._remember(record)
        result.requeue.add(svc.key)

    @staticmethod
    def _warn(result: DriverResult, reason: str, message: str, retry: float) -> None:
        result.events.append(Event(EventType.WARNING, reason, message))
        result.retry_after = min(retry, result.retry_after or retry)

    async def _relabel_held(self, alloc: Allocator, svc: Service) -> None:
        """An offer made for one Service may be taken by another: fix the owner name."""
        for ip in alloc.holdings(svc.key).values():
            record = self._records.get(ip)
            if record is None or record.owner is None:
                continue
            if record.owner.service not in alloc.holders(ip) or (
                record.owner.service == svc.key and record.owner.uid != svc.uid
            ):
                try:
                    self._remember(
                        await self._client_for(ip).relabel(record, Owner(svc.key, svc.uid))
                    )
                except NetboxError:
                    pass  # cosmetic; the startup sync fixes names too

    async def _hand_over(self, alloc: Allocator, key: ServiceKey) -> None:
        """``key`` left a shared address named after it: name a remaining holder."""
        for ip in sorted(self._named.get(key, ()), key=lambda a: (a.version, int(a))):
            holders = alloc.holders(ip)
            record = self._records.get(ip)
            if not holders or key in holders or record is None:
                continue
            try:
                self._remember(await self._client_for(ip).relabel(record, Owner(min(holders))))
            except (NetboxError, LookupError):
                pass  # cosmetic; the holder's next reconcile or the startup sync fixes it

    def _remember(self, record: IPRecord) -> None:
        self._forget(record.address)
        self._records[record.address] = record
        if record.owner is not None:
            self._named.setdefault(ServiceKey(record.owner.service), set()).add(record.address)

    def _forget(self, ip: IPAddress) -> IPRecord | None:
        record = self._records.pop(ip, None)
        if record is not None and record.owner is not None:
            named = self._named.get(ServiceKey(record.owner.service))
            if named is not None:
                named.discard(ip)
                if not named:
                    del self._named[ServiceKey(record.owner.service)]
        return record

    def _client_for(self, ip: IPAddress) -> NetboxClient:
        for state in self._groups.values():
            spec = state.group.netbox
            assert spec is not None
            cached = state.prefixes.get(ip.version)
            if (
                not spec.has_prefix
                or any(ip in p for p in spec.prefixes if p.version == ip.version)
                or (cached is not None and ip in cached.prefix)
            ):
                return state.client
        raise LookupError(f"{ip} is in no NetBox group")

    # ------------------------------------------------------------------ release

    async def _release_all(self, released: list[Released]) -> None:
        for r in released:
            self._unreleased[r.address] = r
        for ip, r in sorted(self._unreleased.items(), key=lambda kv: (kv[0].version, int(kv[0]))):
            try:
                await self._release_one(r)
            except NetboxUnavailable:
                return  # keep the rest for the next call; NetBox is down
            except NetboxError:
                pass  # refused (not ours, bad token): nothing more we can do for it
            self._unreleased.pop(ip, None)

    async def _release_one(self, r: Released) -> None:
        state = self._groups.get(r.group or "")
        if state is None:
            return  # the group is gone; its addresses are found by the next startup sync
        record = self._forget(r.address)
        if record is None:
            found = await state.client.find(
                r.address, vrf_id=(state.prefixes.get(r.address.version) or _NO_PREFIX).vrf_id
            )
            mine = [rec for rec in found if rec.owner is not None]
            if not mine:
                return  # already gone (deleted by hand): released
            record = mine[0]
        if record.owner is None:
            return  # never delete a record PureLB does not own
        await state.client.release(record, legacy=state.legacy)

    async def release(self, released: Iterable[Released]) -> None:
        """Give addresses back (e.g. ``ConfigResult.unused_offers``); kept if NetBox is down."""
        await self._release_all([r for r in released if r.pool_type is PoolType.NETBOX])

    @property
    def unreleased(self) -> tuple[IPAddress, ...]:
        """Released addresses not yet returned to NetBox (it was unreachable)."""
        return tuple(self._unreleased)

    async def retry_releases(self, now: float) -> None:
        """Try the kept releases again, at most every ``UNAVAILABLE_RETRY_S`` (``now``: a
        monotonic clock); the daemon calls this from a periodic loop."""
        if self._unreleased and now - self._last_release_try >= UNAVAILABLE_RETRY_S:
            self._last_release_try = now
            await self._release_all([])

    # ------------------------------------------------------------------ startup sync

    async def sync(self, alloc: Allocator, uids: Mapping[ServiceKey, str]) -> SyncReport:
        """Reconcile NetBox with the Services once imported (call after ``import_services``).

        ``uids``: the uid of each imported Service (owner labels carry it).

        Per (NetBox, tenant): release orphans, re-claim addresses NetBox lost (an Event on
        the Service when someone else took it meanwhile), relabel stale owner names.
        """
        report = SyncReport()
        by_tenant: dict[tuple[NetboxClient, str], list[_GroupState]] = {}
        for state in self._groups.values():
            by_tenant.setdefault((state.client, state.tenant), []).append(state)
        holders: dict[str | None, dict[IPAddress, list[ServiceKey]]] = {}
        for key, _family, address, group, _skey in alloc.snapshot():
            holders.setdefault(group, {}).setdefault(_ip(address), []).append(ServiceKey(key))
        # held by any Service at all (even in no group): never released as an orphan
        anywhere = {ip for by_ip in holders.values() for ip in by_ip}
        for (client, tenant), states in by_tenant.items():
            held: dict[IPAddress, list[ServiceKey]] = {}
            for state in states:
                for ip, keys in holders.get(state.group.name, {}).items():
                    held.setdefault(ip, []).extend(keys)
            try:
                await self._sync_tenant(
                    client, tenant, states, held, holders, uids, report, anywhere
                )
            except NetboxError as exc:
                # NetBox down or the token refused: nothing is released or claimed for
                # this tenant; the daemon runs sync again later (report.incomplete)
                report.incomplete.extend(s.group.name for s in states)
                if isinstance(exc, NetboxAuthError):
                    for s in states:
                        self.problems[s.group.name] = GroupProblem("unauthorized", str(exc))
        return report

    async def _sync_tenant(
        self,
        client: NetboxClient,
        tenant: str,
        states: list[_GroupState],
        held: dict[IPAddress, list[ServiceKey]],
        holders: dict[str | None, dict[IPAddress, list[ServiceKey]]],
        uids: Mapping[ServiceKey, str],
        report: SyncReport,
        anywhere: set[IPAddress],
    ) -> None:
        records = await client.owned(tenant=tenant)
        plan = plan_sync(held, records, keep=anywhere)
        legacy = all(s.legacy for s in states)
        for rec in plan.release:
            await client.release(rec, legacy=legacy)
            report.released.append(rec.address)
        for rec, key in plan.relabel:
            self._remember(await client.relabel(rec, Owner(key, uids.get(key, ""))))
            report.relabelled.append(rec.address)
        for rec in records:
            if rec.owner is not None and rec.address in held and rec.address not in self._records:
                self._remember(rec)
        for ip, key in plan.reclaim:
            state = next(
                (s for s in states if ip in holders.get(s.group.name, {})),
                states[0],
            )
            try:
                prefix = await self._prefix(state, ip.version)
                self._remember(
                    await client.claim(
                        ip, Owner(key, uids.get(key, "")), tenant, prefix=prefix
                    )
                )
                report.reclaimed.append(ip)
            except (NetboxConflict, NetboxNotFound) as exc:
                report.events.setdefault(key, []).append(
                    Event(
                        EventType.WARNING,
                        "NetboxDrift",
                        f"Service {key} holds {ip} but NetBox no longer records it for "
                        f"PureLB and it cannot be claimed again: {exc}",
                    )
                )


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@dataclass(frozen=True, slots=True)
class _NoPrefix:
    vrf_id: int | None = None


_NO_PREFIX = _NoPrefix()
