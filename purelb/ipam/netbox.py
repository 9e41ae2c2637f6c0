"""A small async client for the NetBox IPAM calls PureLB makes (NetBox 4.x REST API).

Why httpx and not pynetbox: pynetbox is synchronous (requests) and would need a worker
thread per call, a limiter, and threads that cannot be cancelled mid-request. httpx's
``AsyncClient`` runs natively on Trio, so a cancelled reconcile aborts its HTTP request,
every call has one connect/read timeout, and one connection pool serves all groups of a
NetBox. It also lets us send ``If-Match`` (compare-and-set) and read ``ETag``, which the
legacy reserved->active claim needs to be race-free; pynetbox exposes neither.

Every address PureLB takes is *owned*: status ``active``, the group's tenant, the
``purelb`` tag and a description ``purelb:<namespace>/<name>`` (``uid=<uid>`` appended when
known) -- see :class:`Owner`. Anyone looking at NetBox sees who holds what, and a restart
can find every address PureLB still holds (:meth:`NetboxClient.owned`).

Errors are typed (all :class:`NetboxError`): :class:`NetboxAuthError` (401/403: a bad
token, not retried), :class:`NetboxUnavailable` (connect errors, timeouts, 5xx: retried
with backoff, then raised), :class:`NetboxExhausted` (409 on ``available-ips``),
:class:`NetboxNotFound`, :class:`NetboxConflict` (412 stale ``If-Match``, duplicate
address) and :class:`NetboxRequestError` (any other 4xx: a config problem).
"""

from __future__ import annotations

import ipaddress
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from purelb.errors import AllocationError, PurelbError
from purelb.ipam.netbox_records import PURELB_TAG as PURELB_TAG
from purelb.ipam.netbox_records import IPRecord as IPRecord
from purelb.ipam.netbox_records import Owner as Owner
from purelb.ipam.netbox_records import Prefix as Prefix
from purelb.model import IPAddress

#: connect timeout: NetBox is normally on the same network; 3 s covers a slow TLS handshake
CONNECT_TIMEOUT = 3.0
#: read/write timeout of one call. PureLB's sidecar bounds every RPC by 10 s; a NetBox POST
#: of one address takes ~30 ms, so 10 s only trips when NetBox is truly stuck
REQUEST_TIMEOUT = 10.0
#: attempts for a retryable failure (NetBox down, 5xx, timeout) before giving up; the
#: caller (the daemon's work queue) retries again later with its own backoff
RETRY_ATTEMPTS = 4
#: first backoff delay; doubled per attempt, capped, with +-50 % jitter so many groups
#: recovering at once do not hit NetBox in step
RETRY_BASE_DELAY = 0.2
RETRY_MAX_DELAY = 5.0
#: NetBox's MAX_PAGE_SIZE default; pages beyond it are followed through ``next``
PAGE_SIZE = 1000

_STATUS_ACTIVE = "active"
_STATUS_RESERVED = "reserved"


class NetboxError(PurelbError):
    """A NetBox call failed; ``status`` is the HTTP status (0: no answer), ``url`` the call."""

    reason = "netbox_error"

    def __init__(self, message: str, *, status: int = 0, url: str = "", detail: str = "") -> None:
        Exception.__init__(self, message)  # not super(): AllocationError is a sibling base
        self.status = status
        self.url = url
        self.detail = detail


class NetboxAuthError(NetboxError):
    """401/403: the token is missing, wrong or lacks permission. Not retried."""

    reason = "unauthorized"


class NetboxUnavailable(NetboxError):
    """No usable answer (connection refused, timeout, 5xx) after every retry."""

    reason = "unavailable"


class NetboxNotFound(NetboxError):
    """404: the prefix or address does not exist (any more)."""

    reason = "not_found"


class NetboxConflict(NetboxError):
    """412 (the object changed since we read it) or a duplicate address (400)."""

    reason = "conflict"


class NetboxRequestError(NetboxError):
    """Another 4xx: NetBox refused the request (unknown tenant, bad prefix...)."""

    reason = "bad_request"


class NetboxExhausted(NetboxError, AllocationError):
    """409 from ``available-ips``, or no ``reserved`` address left: reason ``exhausted``."""

    reason = "exhausted"

    def __init__(self, message: str, *, status: int = 409, url: str = "", detail: str = "") -> None:
        NetboxError.__init__(self, message, status=status, url=url, detail=detail)


# ---------------------------------------------------------------------- metrics


class NetboxMetrics:
    """Request counts and latency by method, endpoint kind and outcome (injected registry)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "purelb_netbox_requests",
            "NetBox API requests by method, endpoint and outcome",
            ["method", "endpoint", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "purelb_netbox_request_duration_seconds",
            "NetBox API request latency by method, endpoint and outcome",
            ["method", "endpoint", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )

    def observe(self, method: str, endpoint: str, outcome: str, seconds: float) -> None:
        self.requests.labels(method, endpoint, outcome).inc()
        self.latency.labels(method, endpoint, outcome).observe(seconds)


_ENDPOINT_RE = re.compile(r"/\d+/")


def _endpoint(path: str) -> str:
    """A low-cardinality label for a path: ids replaced by ``{id}``, query dropped."""
    return _ENDPOINT_RE.sub("/{id}/", path.split("?", 1)[0])


# ---------------------------------------------------------------------- client


def auth_header(token: str) -> str:
    """``Bearer`` for a v2 token (``nbt_<key>.<secret>``), ``Token`` for a v1 token."""
    token = token.strip()
    if token.startswith("nbt_") and "." in token:
        return f"Bearer {token}"
    return f"Token {token}"


@dataclass(slots=True)
class RetryPolicy:
    attempts: int = RETRY_ATTEMPTS
    base_delay: float = RETRY_BASE_DELAY
    max_delay: float = RETRY_MAX_DELAY
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based), jittered +-50 %."""
        base = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return base * (0.5 + self.rng.random())


class NetboxClient:
    """Async NetBox IPAM client. Use as ``async with NetboxClient(url, token) as nb:``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metrics: NetboxMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={
                "Authorization": auth_header(token),
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,  # a 302 to /login means "not authenticated", not data
        )
        self._tag_ready = False

    async def __aenter__(self) -> NetboxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"<NetboxClient {self.url}>"

    # ------------------------------------------------------------------ transport

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One call with retries on "NetBox unavailable"; returns a 2xx or raises typed.

        ``retry=False`` for non-idempotent calls whose first attempt may have taken effect
        (a POST that timed out after NetBox committed): the caller decides.
        """
        attempts = self.retry.attempts if retry else 1
        endpoint = _endpoint(path)
        last: NetboxError | None = None
        for attempt in range(1, attempts + 1):
            start = time.perf_counter()
            try:
                resp = await self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TimeoutException as exc:
                outcome = "timeout"
                last = NetboxUnavailable(
                    f"NetBox {self.url}: {method} {path} timed out ({type(exc).__name__})",
                    url=f"{self.url}{path}",
                )
            except httpx.TransportError as exc:
                outcome = "unavailable"
                last = NetboxUnavailable(
                    f"NetBox {self.url}: {method} {path} failed: {exc or type(exc).__name__}",
                    url=f"{self.url}{path}",
                )
            else:
                err = _error_for(method, f"{self.url}{path}", resp)
                outcome = "ok" if err is None else err.reason
                self._observe(method, endpoint, outcome, start)
                if err is None:
                    return resp
                if not isinstance(err, NetboxUnavailable):
                    raise err
                last = err
                if attempt < attempts:
                    await self._sleep(self.retry.delay(attempt))
                continue
            self._observe(method, endpoint, outcome, start)
            if attempt < attempts:
                await self._sleep(self.retry.delay(attempt))
        assert last is not None
        raise last

    def _observe(self, method: str, endpoint: str, outcome: str, start: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(method, endpoint, outcome, time.perf_counter() - start)

    async def _list(self, path: str, params: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Every result of a paginated list, following ``next``."""
        query: dict[str, Any] = {"limit": PAGE_SIZE, "offset": 0, **params}
        while True:
            data = (await self._request("GET", path, params=query)).json()
            for item in data.get("results", ()):
                yield item
            if not data.get("next"):
                return
            query["offset"] += len(data.get("results", ())) or PAGE_SIZE

    # ------------------------------------------------------------------ lookups

    async def status(self) -> dict[str, Any]:
        """``/api/status/`` (checks the URL and token; gives ``netbox-version``)."""
        data: dict[str, Any] = (await self._request("GET", "/api/status/")).json()
        return data

    async def prefix(self, ref: str | int) -> Prefix:
        """A prefix by its numeric id or its CIDR as written in NetBox."""
        text = str(ref).strip()
        if text.isdigit():
            data = (await self._request("GET", f"/api/ipam/prefixes/{text}/")).json()
        else:
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise NetboxRequestError(
                    f"prefix {text!r} is neither a NetBox id nor a CIDR", url=self.url
                ) from None
            results = [r async for r in self._list("/api/ipam/prefixes/", {"prefix": str(net)})]
            if not results:
                raise NetboxNotFound(
                    f"NetBox {self.url} has no prefix {net}", status=404, url=self.url
                )
            if len(results) > 1:
                raise NetboxRequestError(
                    f"NetBox {self.url} has {len(results)} prefixes {net} (one per VRF?); "
                    "name it by its numeric id",
                    url=self.url,
                )
            data = results[0]
        vrf = data.get("vrf")
        return Prefix(
            id=int(data["id"]),
            prefix=ipaddress.ip_network(data["prefix"]),
            vrf_id=vrf.get("id") if isinstance(vrf, Mapping) else None,
        )

    async def ensure_tag(self) -> None:
        """Create the ``purelb`` tag once if NetBox does not have it."""
        if self._tag_ready:
            return
        found = (
            await self._request("GET", "/api/extras/tags/", params={"slug": PURELB_TAG})
        ).json()
        if not found.get("count"):
            try:
                await self._request(
                    "POST",
                    "/api/extras/tags/",
                    json={
                        "name": PURELB_TAG,
                        "slug": PURELB_TAG,
                        "description": "address held by a PureLB LoadBalancer Service",
                    },
                )
            except NetboxRequestError:
                # created concurrently by another allocator (unique slug): fine if it exists
                again = await self._request("GET", "/api/extras/tags/", params={"slug": PURELB_TAG})
                if not again.json().get("count"):
                    raise
        self._tag_ready = True

    async def get(self, record_id: int) -> IPRecord:
        resp = await self._request("GET", f"/api/ipam/ip-addresses/{record_id}/")
        return IPRecord.from_json(resp.json(), resp.headers.get("ETag"))

    async def find(self, address: IPAddress, *, vrf_id: int | None = None) -> list[IPRecord]:
        """Records of ``address`` (any mask) in the VRF (``None``: the global table)."""
        params: dict[str, Any] = {"address": str(address)}
        params["vrf_id"] = vrf_id if vrf_id is not None else "null"
        return [IPRecord.from_json(r) async for r in self._list("/api/ipam/ip-addresses/", params)]

    async def owned(self, *, tenant: str | None = None) -> list[IPRecord]:
        """Every address tagged ``purelb`` (of ``tenant`` when given), for restart and drift."""
        params: dict[str, Any] = {"tag": PURELB_TAG}
        if tenant:
            params["tenant"] = tenant
        return [IPRecord.from_json(r) async for r in self._list("/api/ipam/ip-addresses/", params)]

    # ------------------------------------------------------------------ allocate

    def _owned_body(self, owner: Owner, tenant: str) -> dict[str, Any]:
        return {
            "status": _STATUS_ACTIVE,
            "tenant": {"slug": tenant},
            "description": owner.description(),
            "tags": [{"slug": PURELB_TAG}],
        }

    async def allocate(self, prefix: Prefix, owner: Owner, tenant: str) -> IPRecord:
        """Next free address of ``prefix``, created owned by ``owner``.

        NetBox serialises ``available-ips`` per prefix (a PostgreSQL advisory lock), so two
        allocators never get the same address. A POST is not idempotent: if it fails
        without an answer we look for a record with our owner before trying again, so a
        POST that did commit is found instead of leaking a second address.
        """
        await self.ensure_tag()
        path = f"/api/ipam/prefixes/{prefix.id}/available-ips/"
        body = self._owned_body(owner, tenant)
        last: NetboxUnavailable | None = None
        for attempt in range(1, self.retry.attempts + 1):
            if last is not None:
                existing = await self.held_by(owner, family=prefix.family, within=prefix.prefix)
                if existing:
                    return existing[0]
            try:
                resp = await self._request("POST", path, json=body, retry=False)
            except NetboxUnavailable as exc:
                last = exc
                if attempt < self.retry.attempts:
                    await self._sleep(self.retry.delay(attempt))
                continue
            return IPRecord.from_json(resp.json(), resp.headers.get("ETag"))
        assert last is not None
        raise last

    async def held_by(
        self,
        owner: Owner,
        *,
        family: int | None = None,
        within: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
    ) -> list[IPRecord]:
        """Addresses whose description names ``owner`` (exactly), lowest first."""
        params: dict[str, Any] = {"tag": PURELB_TAG, "description": owner.description()}
        if family is not None:
            params["family"] = family
        if within is not None:
            params["parent"] = str(within)
        records = [
            IPRecord.from_json(r) async for r in self._list("/api/ipam/ip-addresses/", params)
        ]
        return sorted(records, key=lambda r: (r.address.version, int(r.address)))

    async def claim(
        self,
        address: IPAddress,
        owner: Owner,
        tenant: str,
        *,
        prefix: Prefix | None = None,
    ) -> IPRecord:
        """Take a specific address: create it if NetBox has no record, else claim a
        ``reserved`` record of ``tenant``. Raises :class:`NetboxConflict` when someone
        else holds it (an existing record that is neither ours nor reserved for us).
        """
        await self.ensure_tag()
        vrf_id = prefix.vrf_id if prefix is not None else None
        if prefix is not None and address not in prefix.prefix:
            raise NetboxRequestError(
                f"{address} is outside NetBox prefix {prefix.prefix}", url=self.url
            )
        for _attempt in range(self.retry.attempts):
            records = await self.find(address, vrf_id=vrf_id)
            if not records:
                length = prefix.prefix.prefixlen if prefix is not None else address.max_prefixlen
                body = self._owned_body(owner, tenant) | {"address": f"{address}/{length}"}
                if vrf_id is not None:
                    body["vrf"] = vrf_id
                try:
                    resp = await self._request("POST", "/api/ipam/ip-addresses/", json=body)
                except NetboxConflict:
                    continue  # created by someone else just now: look again
                return IPRecord.from_json(resp.json(), resp.headers.get("ETag"))
            record = records[0]
            if record.owner == owner:
                return record
            if record.status == _STATUS_RESERVED and record.tenant == tenant:
                try:
                    return await self._take_reserved(record.id, owner, tenant)
                except NetboxConflict:
                    continue
            raise NetboxConflict(
                f"{address} is already in NetBox {self.url} (id {record.id}, status "
                f"{record.status}, tenant {record.tenant}, {record.description!r})",
                status=409,
                url=self.url,
            )
        raise NetboxConflict(
            f"{address}: NetBox {self.url} kept changing while we claimed it", url=self.url
        )

    async def claim_reserved(self, owner: Owner, tenant: str, *, family: int) -> IPRecord:
        """Legacy PureLB flow: take a ``reserved`` address of ``tenant`` by setting it active.

        Unlike PureLB (GET then PATCH: two allocators could take the same address) the
        PATCH carries ``If-Match`` with the ETag we read, so only one claimant's write
        lands; a 412 moves on to the next candidate. The claim is then read back and used
        only if it names us.
        """
        await self.ensure_tag()
        params = {
            "tenant": tenant,
            "status": _STATUS_RESERVED,
            "family": family,
            "ordering": "address",
        }
        async for item in self._list("/api/ipam/ip-addresses/", params):
            try:
                return await self._take_reserved(int(item["id"]), owner, tenant)
            except (NetboxConflict, NetboxNotFound):
                continue  # another claimant won this one; try the next
        raise NetboxExhausted(
            f"NetBox {self.url}: tenant {tenant!r} has no reserved IPv{family} address left",
            status=0,
            url=self.url,
        )

    async def _take_reserved(self, record_id: int, owner: Owner, tenant: str) -> IPRecord:
        current = await self.get(record_id)
        if current.status != _STATUS_RESERVED or current.tenant != tenant:
            raise NetboxConflict(f"address id {record_id} is no longer reserved", url=self.url)
        headers = {"If-Match": current.etag} if current.etag else None
        body = self._owned_body(owner, tenant)
        body["tags"] = [{"slug": t} for t in sorted(current.tags | {PURELB_TAG})]
        await self._request(
            "PATCH", f"/api/ipam/ip-addresses/{record_id}/", json=body, headers=headers
        )
        after = await self.get(record_id)  # read back: use it only if the write we see is ours
        if after.owner != owner or after.status != _STATUS_ACTIVE:
            raise NetboxConflict(
                f"address id {record_id} was claimed by {after.description!r}", url=self.url
            )
        return after

    # ------------------------------------------------------------------ release

    async def release(self, record: IPRecord, *, legacy: bool) -> None:
        """Give an owned address back: delete it, or (``legacy``) set it ``reserved`` again
        with our tag and owner removed. Gone already (404) counts as released.
        """
        path = f"/api/ipam/ip-addresses/{record.id}/"
        try:
            if legacy:
                tags = [{"slug": t} for t in sorted(record.tags - {PURELB_TAG})]
                await self._request(
                    "PATCH",
                    path,
                    json={"status": _STATUS_RESERVED, "description": "", "tags": tags},
                )
            else:
                await self._request("DELETE", path)
        except NetboxNotFound:
            return

    async def relabel(self, record: IPRecord, owner: Owner) -> IPRecord:
        """Name another holder in an owned record (the offer went to another Service)."""
        resp = await self._request(
            "PATCH",
            f"/api/ipam/ip-addresses/{record.id}/",
            json={"description": owner.description()},
        )
        return IPRecord.from_json(resp.json(), resp.headers.get("ETag"))


def _detail(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(data, Mapping) and "detail" in data:
        return str(data["detail"])
    return str(data)[:300]


def _error_for(method: str, url: str, resp: httpx.Response) -> NetboxError | None:
    code = resp.status_code
    if 200 <= code < 300:
        return None
    detail = _detail(resp)
    where = f"NetBox {method} {url}: HTTP {code}"
    kw = {"status": code, "url": url, "detail": detail}
    if code in (401, 403) or (300 <= code < 400 and "login" in resp.headers.get("location", "")):
        return NetboxAuthError(f"{where}: token refused ({detail})", **kw)  # type: ignore[arg-type]
    if code == 404:
        return NetboxNotFound(f"{where}: {detail}", **kw)  # type: ignore[arg-type]
    if code == 409:
        return NetboxExhausted(f"{where}: prefix exhausted ({detail})", **kw)  # type: ignore[arg-type]
    if code == 412 or (code == 400 and "Duplicate IP address" in detail):
        return NetboxConflict(f"{where}: {detail}", **kw)  # type: ignore[arg-type]
    if code >= 500 or code == 429:
        return NetboxUnavailable(f"{where}: {detail}", **kw)  # type: ignore[arg-type]
    return NetboxRequestError(f"{where}: {detail}", **kw)  # type: ignore[arg-type]
