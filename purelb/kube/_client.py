"""The async Kubernetes client: verbs on any :class:`Resource`, over httpx.

One :class:`KubeClient` owns one ``httpx.AsyncClient``. Every request goes through
:meth:`KubeClient._send`, which applies the rate limit and the bearer token, converts
every httpx exception to :class:`ApiUnavailable`, and turns error answers into the typed
errors of :mod:`._errors` with verb, URL and object key attached. Two retries happen
here and nowhere else:

* 429, and 5xx with ``Retry-After`` on reads: wait as told (capped) and retry,
  ``max_throttle_retries`` times — the server asked for it;
* 401 when the token comes from a file: re-read the file once and retry — kubelet may
  have rotated it since we last looked.

Everything else is raised to the caller, who knows whether a retry makes sense.

Objects are plain JSON dicts: this layer does not know what a Service means (``model/``
parses them). The transport is injectable, as in httpx, so unit tests run the same
client against ``httpx.MockTransport``.
"""

from __future__ import annotations

import builtins
import enum
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio

import purelb
from purelb import fastjson
from purelb.errors import ConfigError

from ._config import ClusterConfig, TokenSource, make_ssl_context
from ._errors import (
    ApiUnavailable,
    KubeApiError,
    MalformedResponse,
    RequestContext,
    ServerError,
    TooManyRequests,
    Unauthorized,
    map_error,
    parse_status,
)
from ._lean import LeanError, LeanPool, LeanResponse
from ._ratelimit import DEFAULT_RATE_LIMIT, RateLimiter, RateLimitSettings
from ._resources import Resource
from ._selectors import LabelSelectorInput, encode_field_selector, encode_label_selector
from ._watch import LineSplitter, WatchEvent, decode_event

LOGGER = logging.getLogger(__name__)

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """Timeouts, limits and retry policy of one client."""

    connect_timeout_s: float = 10.0
    """TCP+TLS connect timeout. 10 s covers a loaded control plane; past it, retry instead."""
    request_timeout_s: float = 60.0
    """Read/write timeout for non-watch requests. The API server's own request timeout is 60 s."""
    rate_limit: RateLimitSettings | None = DEFAULT_RATE_LIMIT
    """Client-side token bucket; ``None`` turns it off (benchmarks)."""
    max_throttle_retries: int = 10
    """Retries of one request after 429 (or 5xx with Retry-After); client-go also uses 10."""
    retry_after_cap_s: float = 30.0
    """Longest Retry-After we obey, so a broken header cannot park a request for hours."""
    default_retry_after_s: float = 1.0
    """Wait after a 429 that has no Retry-After header (client-go's default)."""
    token_reload_s: float = 60.0
    """How often a token file is re-read. client-go re-reads every minute; kubelet rotates
    well before expiry, so a minute of staleness is safe."""
    max_connections: int = 256
    """Connection pool size. Each open watch pins one HTTP/1.1 connection."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "request_timeout_s", "retry_after_cap_s",
                     "token_reload_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"client setting {name} must be > 0, got {value}",
                                  path=name, value=value)
        if self.max_throttle_retries < 0:
            raise ConfigError(f"max_throttle_retries must be >= 0, got {self.max_throttle_retries}",
                              path="max_throttle_retries", value=self.max_throttle_retries)


DEFAULT_CLIENT_SETTINGS = ClientSettings()


class PatchType(enum.Enum):
    """Patch formats (the value is the Content-Type)."""

    MERGE = "application/merge-patch+json"
    """RFC 7386 merge patch: a partial object; ``null`` deletes a key."""
    JSON = "application/json-patch+json"
    """RFC 6902 JSON patch: a list of operations (``test`` gives compare-and-set)."""
    STRATEGIC = "application/strategic-merge-patch+json"
    """Kubernetes strategic merge (core types only)."""


@dataclass(slots=True)
class _Retries:
    """Retry budget of one request."""

    throttled: int = 0
    """Retries spent on 429 / 5xx with Retry-After."""
    token_reloaded: bool = False
    """Whether the token file was already re-read after a 401."""


class _State(enum.Enum):
    UNOPENED = "unopened"
    """Built, ``__aenter__`` not yet called."""
    OPEN = "open"
    """Usable."""
    CLOSED = "closed"
    """Closed; cannot be reopened."""


def user_agent(role: str) -> str:
    """``purelb/<version> (<role>)``, the User-Agent of every request."""
    return f"purelb/{purelb.__version__} ({role})"


def _key(namespace: str | None, name: str | None) -> str:
    if name is None:
        return f"{namespace}/*" if namespace else ""
    return f"{namespace}/{name}" if namespace else name


class KubeClient:
    """Typed verbs over the Kubernetes REST API. Use as ``async with KubeClient(...) as c``.

    Args:
        config: where and how to connect (:func:`load_config`).
        role: goes into the User-Agent, e.g. ``allocator``.
        settings: timeouts, rate limit, retry policy.
        transport: an httpx transport to use instead of the network one.
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        role: str = "client",
        settings: ClientSettings = DEFAULT_CLIENT_SETTINGS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.role = role
        self._limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None
        self._tokens = TokenSource(config, reload_s=settings.token_reload_s)
        verify: Any = True
        if transport is None and config.server.startswith("https://"):
            verify = make_ssl_context(config)
        self._extensions: dict[str, Any] = {}
        if config.tls_server_name:
            self._extensions["sni_hostname"] = config.tls_server_name
        self._http = httpx.AsyncClient(
            base_url=config.server,
            verify=verify,
            transport=transport,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
            headers={"User-Agent": user_agent(role), "Accept": "application/json"},
            limits=httpx.Limits(max_connections=settings.max_connections,
                                max_keepalive_connections=settings.max_connections),
            # Proxy variables are ignored: the API server is reached directly, as kubelet
            # and in-cluster clients do; a stray HTTPS_PROXY must not capture tokens.
            trust_env=False,
        )
        # Small buffered requests go through the lean pool; an injected transport (tests,
        # embedding) keeps everything on httpx so it sees every request.
        self._lean: LeanPool | None = None
        if transport is None:
            self._lean = LeanPool(
                config.server, ssl_context=verify if verify is not True else None,
                server_hostname=config.tls_server_name,
                connect_timeout_s=settings.connect_timeout_s,
                request_timeout_s=settings.request_timeout_s,
                max_connections=settings.max_connections,
                base_headers=[("User-Agent", user_agent(role)), ("Accept", "application/json")])
        self._state = _State.UNOPENED
        self.requests = 0
        """Requests sent (including retries), for metrics and benchmarks."""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> KubeClient:
        if self._state is _State.OPEN:
            raise RuntimeError("KubeClient is already open; enter it once")
        if self._state is _State.CLOSED:
            raise RuntimeError("KubeClient cannot be reopened once closed; build a new one")
        self._state = _State.OPEN
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._state = _State.CLOSED
        if self._lean is not None:
            await self._lean.aclose()
        await self._http.aclose()

    def _check_open(self) -> None:
        if self._state is _State.UNOPENED:
            raise RuntimeError("KubeClient used before 'async with KubeClient(...)'")
        if self._state is _State.CLOSED:
            raise RuntimeError("KubeClient used after it was closed")

    def __repr__(self) -> str:
        return f"KubeClient({self.config.server!r}, role={self.role!r}, {self._state.value})"

    # ------------------------------------------------------------------ verbs

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> JSON:
        """Return one object; raises :class:`NotFound` if it does not exist."""
        path = resource.path(namespace=namespace, name=name)
        return await self._json("GET", path, verb="get", key=_key(namespace, name))

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: LabelSelectorInput | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> JSON:
        """Return one page of a list (the ``*List`` object, with ``metadata.continue``)."""
        params = _selector_params(label_selector, field_selector)
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        path = resource.path(namespace=namespace)
        return await self._json("GET", path, params=params, verb="list",
                                key=_key(namespace, None))

    async def list_all(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: LabelSelectorInput | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> tuple[builtins.list[JSON], str]:
        """Follow ``continue`` tokens; return ``(items, resourceVersion)`` of a consistent list.

        The resourceVersion is the first page's: all pages are served from that snapshot.
        """
        items: list[JSON] = []
        token: str | None = None
        rv = ""
        while True:
            page = await self.list(resource, namespace=namespace, label_selector=label_selector,
                                   field_selector=field_selector, limit=page_size,
                                   continue_token=token)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion", ""))
            token = meta.get("continue") or None
            if not token:
                return items, rv

    async def create(self, resource: Resource, obj: JSON, *, namespace: str | None = None) -> JSON:
        """Create ``obj``; raises :class:`AlreadyExists` if the name is taken."""
        namespace = self._namespace_of(resource, obj, namespace)
        path = resource.path(namespace=namespace)
        name = (obj.get("metadata") or {}).get("name")
        return await self._json("POST", path, body=obj, verb="create",
                                key=_key(namespace, name or "<generateName>"))

    async def replace(
        self, resource: Resource, obj: JSON, *, namespace: str | None = None,
        subresource: str | None = None,
    ) -> JSON:
        """PUT ``obj``. With ``metadata.resourceVersion`` set this is compare-and-swap:
        a concurrent change raises :class:`Conflict`."""
        namespace = self._namespace_of(resource, obj, namespace)
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            raise ValueError(f"replace of {resource.kind} needs metadata.name in the object")
        path = resource.path(namespace=namespace, name=name, subresource=subresource)
        return await self._json("PUT", path, body=obj, verb="replace" + _sub(subresource),
                                key=_key(namespace, name))

    async def replace_status(self, resource: Resource, obj: JSON, *,
                             namespace: str | None = None) -> JSON:
        """PUT the ``status`` subresource (spec changes in ``obj`` are ignored by the server)."""
        return await self.replace(resource, obj, namespace=namespace, subresource="status")

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: JSON | builtins.list[JSON],
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        subresource: str | None = None,
    ) -> JSON:
        """Apply a merge, JSON or strategic patch; return the patched object."""
        if patch_type is PatchType.JSON and not isinstance(patch, list):
            raise TypeError(f"a JSON patch is a list of operations, got {type(patch).__name__}")
        if patch_type is not PatchType.JSON and not isinstance(patch, dict):
            raise TypeError(f"a {patch_type.name} patch is an object, got {type(patch).__name__}")
        path = resource.path(namespace=namespace, name=name, subresource=subresource)
        return await self._json("PATCH", path, body=patch, content_type=patch_type.value,
                                verb="patch" + _sub(subresource), key=_key(namespace, name))

    async def apply(
        self, resource: Resource, obj: JSON, *, field_manager: str, force: bool = False,
        namespace: str | None = None,
    ) -> JSON:
        """Server-side apply ``obj`` (created if missing) as ``field_manager``.

        Applying the same object again is a no-op on the server (same resourceVersion),
        which is what makes ``kubectl apply``-style start-up manifests idempotent.
        """
        if not field_manager:
            raise ValueError("server-side apply needs a non-empty field_manager")
        namespace = self._namespace_of(resource, obj, namespace)
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            raise ValueError(f"apply of {resource.kind} needs metadata.name in the object")
        path = resource.path(namespace=namespace, name=name)
        params = {"fieldManager": field_manager}
        if force:
            params["force"] = "true"
        return await self._json("PATCH", path, body=obj, params=params,
                                content_type="application/apply-patch+yaml", verb="apply",
                                key=_key(namespace, name))

    async def patch_status(
        self, resource: Resource, name: str, patch: JSON | builtins.list[JSON], *,
        namespace: str | None = None, patch_type: PatchType = PatchType.MERGE,
    ) -> JSON:
        """Patch the ``status`` subresource."""
        return await self.patch(resource, name, patch, namespace=namespace,
                                patch_type=patch_type, subresource="status")

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
    ) -> JSON:
        """Delete one object; ``uid``/``resource_version`` are preconditions (409 if stale).

        Returns what the server returns: the deleted object, or a ``Status``.
        """
        body: JSON = {"apiVersion": "v1", "kind": "DeleteOptions"}
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if pre:
            body["preconditions"] = pre
        if propagation_policy is not None:
            if propagation_policy not in ("Orphan", "Background", "Foreground"):
                raise ValueError(f"propagation_policy {propagation_policy!r} is not Orphan, "
                                 "Background or Foreground")
            body["propagationPolicy"] = propagation_policy
        path = resource.path(namespace=namespace, name=name)
        return await self._json("DELETE", path, body=body, verb="delete",
                                key=_key(namespace, name))

    @asynccontextmanager
    async def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: LabelSelectorInput | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchStream]:
        """Open a watch; ``async for event in stream`` yields :class:`WatchEvent`.

        The stream ends when the server closes it (``timeout_seconds``). Errors, including
        a 410 from an expired ``resource_version``, are raised while opening or iterating.
        There is no read timeout: wrap the iteration in ``trio.move_on_after`` to bound it.
        """
        self._check_open()
        params = _selector_params(label_selector, field_selector)
        params["watch"] = "1"
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(int(timeout_seconds))
        path = resource.path(namespace=namespace)
        ctx = RequestContext("watch", path, _key(namespace, None))
        timeout = httpx.Timeout(self.settings.request_timeout_s,
                                connect=self.settings.connect_timeout_s, read=None)
        retries = _Retries()
        while True:
            await self._before_request()
            auth = await self._auth_headers()
            try:
                request = self._http.build_request("GET", path, params=params, timeout=timeout,
                                                   headers=auth, extensions=self._extensions)
                response = await self._http.send(request, stream=True)
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                raise _unavailable(exc, ctx) from exc
            if response.status_code < 400:
                break
            try:
                body = await _read_error_body(response, ctx)
            finally:
                await response.aclose()
            error = _error_from(response, body, ctx)
            delay = await self._retry_delay(error, retries, idempotent=True)
            if delay is None:
                raise error
            await trio.sleep(delay)
        stream = WatchStream(response, ctx)
        try:
            yield stream
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    # ------------------------------------------------------------------ internals

    def _namespace_of(self, resource: Resource, obj: JSON, namespace: str | None) -> str | None:
        if not isinstance(obj, dict):
            raise TypeError(f"object must be a dict, got {type(obj).__name__}")
        if not resource.namespaced:
            return None
        return namespace or (obj.get("metadata") or {}).get("namespace") or self.config.namespace

    async def _before_request(self) -> None:
        self._check_open()
        if self._limiter is not None:
            await self._limiter.acquire()
        self.requests += 1

    async def _auth_headers(self) -> dict[str, str]:
        try:
            token = await self._tokens.token()
        except ConfigError as exc:
            raise Unauthorized(f"no bearer token: {exc}") from exc
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _retry_delay(self, error: KubeApiError, retries: _Retries, *,
                           idempotent: bool) -> float | None:
        """Seconds to wait before retrying ``error``, or ``None`` to raise it."""
        if isinstance(error, Unauthorized):
            if not self._tokens.rotates or retries.token_reloaded:
                return None
            retries.token_reloaded = True
            self._tokens.invalidate()
            return 0.0
        if isinstance(error, TooManyRequests):
            wait = error.retry_after_s
            if wait is None:
                wait = self.settings.default_retry_after_s
        elif isinstance(error, ServerError) and error.retry_after_s is not None and idempotent:
            wait = error.retry_after_s
        else:
            return None
        if retries.throttled >= self.settings.max_throttle_retries:
            return None
        retries.throttled += 1
        wait = min(wait, self.settings.retry_after_cap_s)
        LOGGER.info("event=api_throttled verb=%s url=%s code=%s retrying_in_s=%.3f",
                    error.context.verb if error.context else "?",
                    error.context.url if error.context else "?", error.code, wait)
        return wait

    async def _json(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        key: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        ctx = RequestContext(verb, path, key)
        content = None if body is None else fastjson.dumps(body)
        headers = {"Content-Type": content_type} if content is not None else {}
        retries = _Retries()
        lean = self._lean if not params else None
        while True:
            await self._before_request()
            auth = await self._auth_headers()
            response: httpx.Response | LeanResponse
            if lean is not None:
                try:
                    response = await lean.request(method, path, [*headers.items(),
                                                                 *auth.items()], content)
                except LeanError as exc:
                    raise ApiUnavailable(f"{ctx.describe()}: API server unreachable ({exc})",
                                         context=ctx) from exc
            else:
                try:
                    request = self._http.build_request(
                        method, path, params=params, content=content,
                        headers={**headers, **auth}, extensions=self._extensions,
                    )
                    response = await self._http.send(request)
                except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                    raise _unavailable(exc, ctx) from exc
            if response.status_code < 400:
                return _decode_json(response.content, ctx)
            error = _error_from(response, response.content, ctx)
            delay = await self._retry_delay(error, retries, idempotent=method == "GET")
            if delay is None:
                raise error
            await trio.sleep(delay)


class WatchStream:
    """Iterate the events of one open watch (see :meth:`KubeClient.watch`)."""

    def __init__(self, response: httpx.Response, context: RequestContext) -> None:
        self._response = response
        self._chunks = response.aiter_bytes()
        self._splitter = LineSplitter()
        self._ready: list[bytes] = []
        self.context = context
        self.events = 0
        """Events decoded so far (bookmarks included)."""

    def __repr__(self) -> str:
        return f"WatchStream({self.context.url}, events={self.events})"

    def __aiter__(self) -> WatchStream:
        return self

    async def aclose(self) -> None:
        """Close the byte iterator and the response (the watch context does this)."""
        try:
            await self._chunks.aclose()  # type: ignore[attr-defined]
        except (httpx.HTTPError, httpx.StreamError):
            pass  # closing a broken stream: nothing left to release
        await self._response.aclose()

    async def __anext__(self) -> WatchEvent:
        while not self._ready:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                if self._splitter.pending():
                    raise ApiUnavailable(
                        f"{self.context.describe()}: watch stream ended inside an event "
                        f"({self._splitter.pending()} bytes)", context=self.context) from None
                raise
            except (httpx.HTTPError, httpx.StreamError) as exc:
                raise _unavailable(exc, self.context) from exc
            self._ready = self._splitter.feed(chunk)
        line = self._ready.pop(0)
        self.events += 1
        return decode_event(line, self.context)


def _sub(subresource: str | None) -> str:
    return f"/{subresource}" if subresource else ""


def _selector_params(label_selector: LabelSelectorInput | None,
                     field_selector: str | Mapping[str, str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector is not None:
        encoded = encode_label_selector(label_selector)
        if encoded:
            params["labelSelector"] = encoded
    if field_selector is not None:
        encoded = encode_field_selector(field_selector)
        if encoded:
            params["fieldSelector"] = encoded
    return params


def _unavailable(exc: Exception, ctx: RequestContext) -> ApiUnavailable:
    # httpx often wraps the informative error (an ssl.SSLCertVerificationError, an
    # OSError with errno) in an exception with an empty message: report the innermost.
    detail = f"{type(exc).__name__}: {exc}"
    inner: BaseException | None = exc
    while inner is not None:
        if str(inner):
            detail = f"{type(inner).__name__}: {inner}"
        inner = inner.__cause__ or inner.__context__
    return ApiUnavailable(f"{ctx.describe()}: API server unreachable ({detail})", context=ctx)


def _error_from(response: httpx.Response | LeanResponse, body: bytes,
                ctx: RequestContext) -> KubeApiError:
    return map_error(response.status_code, status=parse_status(body), body_size=len(body),
                     retry_after=response.headers.get("retry-after"), context=ctx)


async def _read_error_body(response: httpx.Response, ctx: RequestContext) -> bytes:
    try:
        return await response.aread()
    except (httpx.HTTPError, httpx.StreamError) as exc:
        raise _unavailable(exc, ctx) from exc


def _decode_json(content: bytes, ctx: RequestContext) -> JSON:
    try:
        data = fastjson.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedResponse(f"{ctx.describe()}: response of {len(content)} bytes is not JSON",
                                context=ctx) from exc
    if not isinstance(data, dict):
        raise MalformedResponse(f"{ctx.describe()}: expected a JSON object, got "
                                f"{type(data).__name__}", context=ctx)
    return data
