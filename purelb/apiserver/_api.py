"""The Kubernetes REST surface: routing, authentication, negotiation, list/get/watch.

:class:`KubeApi` is the application the HTTP transport calls. It resolves a path to a
resource (``/api/v1/...``, ``/apis/<g>/<v>/...``), authenticates the bearer token,
applies injected faults, records the audit set, decodes the body and dispatches to
:class:`Objects` for writes or serves reads itself. Every failure leaves as a ``Status``
body (never a traceback, never a partial write: writes validate fully before storing).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import trio
import yaml

from purelb import fastjson

from . import _discovery as D
from . import _errors as E
from ._errors import StatusError
from ._faults import FaultInjector
from ._http import Request, Response, StreamResponse
from ._objects import Objects, PatchType, WriteOptions, WriteResult
from ._protobuf import ProtobufError, decode_object
from ._resources import Registry, ResourceDef
from ._selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from ._store import Store, WatchExpired
from ._tables import render_table
from ._watch import WatchStream

LOG = logging.getLogger(__name__)

JSON = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"
ANONYMOUS = "system:anonymous"
_HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
MAX_FIELD_MANAGER_LEN = 128
"""The real server's limit on ?fieldManager= length."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """Limits and timings of the REST surface."""

    max_body_bytes: int = 3 * 1024 * 1024
    """The real server's request body limit (3 MiB); larger bodies get 413."""
    bookmark_interval_s: float = 60.0
    """Bookmark cadence for watches that allow them; the real server sends one a minute."""
    default_watch_timeout_s: float = 1800.0
    """Watch length when the client sends no timeoutSeconds (the real --min-request-timeout)."""
    server_address: str = "127.0.0.1:0"
    """Advertised in the legacy /api reply (serverAddressByClientCIDRs)."""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.bookmark_interval_s <= 0:
            raise ValueError(f"bookmark_interval_s must be > 0, got {self.bookmark_interval_s}")
        if self.default_watch_timeout_s <= 0:
            raise ValueError(
                f"default_watch_timeout_s must be > 0, got {self.default_watch_timeout_s}"
            )


class AuditKey(NamedTuple):
    """One kind of request a user made (what an RBAC rule would have to allow)."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str


class AuditRequest(NamedTuple):
    """One request as an RBAC authorizer sees it: :class:`AuditKey` plus the object name.

    ``name`` is the path's name, or for list/watch the exact ``metadata.name`` of the field
    selector (the real server authorizes those against ``resourceNames``); else "".
    """

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str


def selector_name(field_selector: str | None) -> str:
    """The name a ``metadata.name=X`` (or ``==``) term pins, as the real server reads it."""
    for part in (field_selector or "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "metadata.name":
            return value.lstrip("=").strip()
    return ""


class _Target(NamedTuple):
    rdef: ResourceDef
    namespace: str | None
    name: str | None
    subresource: str


def _json(status: int, doc: Any, *, content_type: str = JSON,
          headers: dict[str, str] | None = None) -> Response:
    body = fastjson.dumps(doc)
    return Response(status, body, content_type, headers or {})


def error_response(err: StatusError) -> Response:
    return _json(err.code, err.status(), headers=err.headers)


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "ns": key[0], "name": key[1]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(doc["rv"]), (str(doc["ns"]), str(doc["name"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise E.bad_request(f"invalid continue token {token!r}") from None


def _int_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise E.bad_request(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise E.bad_request(f"{name} must be >= 0, got {value}")
    return value


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "")


class KubeApi:
    """The request handler (see module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        objects: Objects,
        faults: FaultInjector,
        settings: ApiSettings,
        tokens: dict[str, str],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.registry = registry
        self.objects = objects
        self.faults = faults
        self.settings = settings
        self.tokens = dict(tokens)
        self.clock = clock
        self.audit: dict[str, set[AuditKey]] = {}
        self.audit_named: dict[str, set[AuditRequest]] = {}
        self._openapi_cache: tuple[int, dict[str, Any], dict[str, bytes]] | None = None

    # ---- public accessors ------------------------------------------------------------
    def audit_records(self, user: str | None = None) -> dict[str, set[AuditKey]] | set[AuditKey]:
        """The audit set: per user, or for one user."""
        if user is not None:
            return set(self.audit.get(user, set()))
        return {u: set(s) for u, s in self.audit.items()}

    def audit_requests(self, user: str) -> set[AuditRequest]:
        """One user's requests with object names (what ``resourceNames`` rules see)."""
        return set(self.audit_named.get(user, set()))

    # ---- entry point -----------------------------------------------------------------
    async def __call__(self, req: Request) -> Response | StreamResponse:
        resp = await self._handle(req)
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("event=request method=%s target=%s user=%s status=%d", req.method,
                      req.target, req.user or "-", resp.status)
        return resp

    async def _handle(self, req: Request) -> Response | StreamResponse:
        try:
            delay = self.faults.delay_for(req.target)
            if delay > 0:
                await trio.sleep(delay)
            if req.path not in _HEALTH_PATHS:
                req.user = self._authenticate(req)
            injected = self.faults.injected(req.method, req.target)
            if injected is not None:
                raise self._injected_error(injected.status, injected.retry_after)
            return await self._route(req)
        except StatusError as err:
            return error_response(err)
        except Exception as exc:  # a bug: answer 500 and keep serving everyone else
            LOG.exception("event=handler_failed method=%s target=%s", req.method, req.target)
            return error_response(E.internal(f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def _injected_error(status: int, retry_after: int | None) -> StatusError:
        reasons = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                   409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
                   500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
        headers: dict[str, str] = {}
        details: dict[str, Any] | None = None
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
            details = {"retryAfterSeconds": retry_after}
        return StatusError(status, reasons.get(status, "InternalError"),
                           f"injected fault: HTTP {status}", details=details, headers=headers)

    def _authenticate(self, req: Request) -> str:
        if not self.tokens:
            return ANONYMOUS
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise E.unauthorized()
        return user

    # ---- routing ---------------------------------------------------------------------
    async def _route(self, req: Request) -> Response | StreamResponse:
        path = req.path.rstrip("/") or "/"
        segs = [s for s in path.split("/") if s]
        if path in _HEALTH_PATHS:
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return _json(200, D.VERSION_INFO)
        if not segs:
            return _json(200, {"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]})
        if segs[0] == "openapi":
            return self._openapi(req, segs)
        if segs[0] == "api":
            if len(segs) == 1:
                return self._discovery_root(req, core=True)
            if segs[1] != "v1":
                raise E.no_such_path(path)
            if len(segs) == 2:
                return _json(200, D.api_resource_list(self.registry, "", "v1"))
            group, version, rest = "", "v1", segs[2:]
        elif segs[0] == "apis":
            if len(segs) == 1:
                return self._discovery_root(req, core=False)
            group = segs[1]
            if not self.registry.versions(group):
                raise E.no_such_path(path)
            if len(segs) == 2:
                return _json(200, D.api_group(self.registry, group))
            version = segs[2]
            if not self.registry.has_group_version(group, version):
                raise E.no_such_path(path)
            if len(segs) == 3:
                return _json(200, D.api_resource_list(self.registry, group, version))
            rest = segs[3:]
        else:
            raise E.no_such_path(path)
        target = self._resolve(group, version, rest, path)
        return await self._dispatch(req, target)

    def _resolve(self, group: str, version: str, rest: list[str], path: str) -> _Target:
        ns: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise E.no_such_path(path)
        rdef = self.registry.get(group, version, rest[0])
        if rdef is None:
            raise E.no_such_path(path)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if ns is not None and not rdef.namespaced:
            raise E.no_such_path(path)
        if rdef.namespaced and ns is None and name is not None:
            raise E.no_such_path(path)
        if sub and sub not in rdef.subresources:
            raise E.no_such_path(path)
        return _Target(rdef, ns, name, sub)

    def _record(self, req: Request, verb: str, t: _Target) -> None:
        key = AuditKey(verb, t.rdef.group, t.rdef.plural, t.subresource, t.namespace or "")
        self.audit.setdefault(req.user or ANONYMOUS, set()).add(key)
        name = t.name or ""
        if not name and verb in ("list", "watch"):
            name = selector_name(req.query.get("fieldSelector"))
        self.audit_named.setdefault(req.user or ANONYMOUS, set()).add(AuditRequest(*key, name))

    async def _dispatch(self, req: Request, t: _Target) -> Response | StreamResponse:
        method = req.method.upper()
        q = req.query
        if t.name is None:
            if method == "GET":
                verb = "watch" if _truthy(q.get("watch")) and "watch" in q else "list"
            else:
                verb = {"POST": "create", "DELETE": "deletecollection"}.get(method, "")
        else:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}.get(method, "")
            if t.subresource and verb in ("delete",):
                verb = ""
        if not verb:
            raise E.method_not_allowed(f"the server does not allow this method on the requested "
                                       f"resource ({method} {t.rdef.plural})")
        self._record(req, verb, t)
        if t.subresource == "scale":
            return await self._scale(req, t, verb)
        if verb == "list":
            return self._list(req, t)
        if verb == "watch":
            return self._watch(req, t)
        if verb == "get":
            return self._get(req, t)
        return await self._write(req, t, verb)

    # ---- discovery and openapi -------------------------------------------------------
    def _discovery_root(self, req: Request, *, core: bool) -> Response:
        media = D.wants_aggregated(req.headers.get("accept", ""))
        if media is not None:
            return _json(200, D.aggregated(self.registry, core=core, media_type=media),
                         content_type=media)
        if core:
            return _json(200, D.api_versions(self.settings.server_address))
        return _json(200, D.api_group_list(self.registry))

    def _openapi(self, req: Request, segs: list[str]) -> Response:
        if len(segs) < 2 or segs[1] != "v3":
            raise E.no_such_path(req.path)
        if self._openapi_cache is None or self._openapi_cache[0] != self.registry.generation:
            root, docs = D.openapi_root(self.registry)
            self._openapi_cache = (self.registry.generation, root, docs)
        _, root, docs = self._openapi_cache
        if len(segs) == 2:
            return _json(200, root)
        doc = docs.get("/".join(segs[2:]))
        if doc is None:
            raise E.no_such_path(req.path)
        headers = {"Cache-Control": "public, immutable"} if "hash" in req.query else {}
        return Response(200, doc, JSON, headers)

    # ---- reads -----------------------------------------------------------------------
    @staticmethod
    def _wants_table(req: Request) -> bool:
        accept = req.headers.get("accept", "").replace(" ", "")
        return "as=Table" in accept and "g=meta.k8s.io" in accept

    @staticmethod
    def _check_accept(req: Request) -> None:
        accept = req.headers.get("accept", "")
        if not accept:
            return
        types = [p.split(";")[0].strip().lower() for p in accept.split(",")]
        if not any(t in ("application/json", "*/*", "application/*", "application/yaml")
                   or t.endswith("+json") for t in types):
            raise E.not_acceptable(
                f"only the following media types are accepted: application/json, "
                f"application/yaml (asked for {accept!r})"
            )

    def _selectors(self, req: Request, rdef: ResourceDef) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = parse_label_selector(req.query.get("labelSelector"))
            fields = parse_field_selector(req.query.get("fieldSelector"), rdef.field_labels)
        except SelectorError as exc:
            raise E.bad_request(f"unable to parse requirement: {exc}") from None
        return labels, fields

    @staticmethod
    def _out(rdef: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("apiVersion") != rdef.api_version and rdef.crd_name:
            return {**obj, "apiVersion": rdef.api_version}
        return obj

    def _get(self, req: Request, t: _Target) -> Response:
        self._check_accept(req)
        ns = t.namespace or ""
        assert t.name is not None
        obj = self.store.get(t.rdef.storage_key, ns, t.name)
        if obj is None:
            raise E.not_found(t.rdef.plural, t.name, t.rdef.group)
        if self._wants_table(req) and not t.subresource:
            table = render_table(t.rdef, [self._out(t.rdef, obj)], now=self.clock(),
                                 resource_version=obj["metadata"]["resourceVersion"],
                                 include_object=req.query.get("includeObject", "Metadata"))
            return _json(200, table)
        return _json(200, self._out(t.rdef, obj))

    def _list(self, req: Request, t: _Target) -> Response:
        self._check_accept(req)
        rdef = t.rdef
        labels, fields = self._selectors(req, rdef)
        limit = _int_param(req.query, "limit") or 0
        token = req.query.get("continue", "")
        rv_param = req.query.get("resourceVersion", "")
        rv_match = req.query.get("resourceVersionMatch", "")
        after: tuple[str, str] | None = None
        if rv_param and rv_param != "0":
            try:
                want = int(rv_param)
            except ValueError:
                raise E.bad_request(f"invalid resourceVersion {rv_param!r}") from None
            if want > self.store.rv:
                raise StatusError(504, "Timeout", f"Too large resource version: {want}, "
                                  f"current: {self.store.rv}",
                                  details={"causes": [{"reason": "ResourceVersionTooLarge",
                                                       "message": "Too large resource version"}],
                                           "retryAfterSeconds": 1})
        else:
            want = 0
        try:
            if token:
                list_rv, after = _decode_continue(token)
                state = self.store.snapshot_at(rdef.storage_key, t.namespace, list_rv)
            elif rv_match == "Exact" and want:
                list_rv = want
                state = self.store.snapshot_at(rdef.storage_key, t.namespace, want)
            else:
                list_rv = self.store.rv
                state = None
        except WatchExpired:
            raise E.gone(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter, or use the "
                "continue token in this response to retrieve the remainder of the results. "
                "Continuing with the provided token results in an inconsistent list - objects "
                "that were created, modified, or deleted between the time the first chunk was "
                "returned and now may show up in the list."
                if token else f"too old resource version: {want} ({self.store.compacted_rv})"
            ) from None
        if state is None:
            objs = self.store.list(rdef.storage_key, t.namespace)
        else:
            objs = [state[k] for k in sorted(state)]
        if after is not None:
            objs = [o for o in objs
                    if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        if not labels.empty or not fields.empty:
            objs = [o for o in objs
                    if labels.matches(o["metadata"].get("labels")) and fields.matches(o)]
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        next_token = ""
        if limit and len(objs) > limit:
            last = objs[limit - 1]["metadata"]
            next_token = _encode_continue(list_rv, (last.get("namespace", ""), last["name"]))
            meta["continue"] = next_token
            meta["remainingItemCount"] = len(objs) - limit
            objs = objs[:limit]
        objs = [self._out(rdef, o) for o in objs]
        if self._wants_table(req):
            return _json(200, render_table(
                rdef, objs, now=self.clock(), resource_version=str(list_rv),
                include_object=req.query.get("includeObject", "Metadata"),
                continue_token=next_token))
        return _json(200, {"kind": f"{rdef.kind}List", "apiVersion": rdef.api_version,
                           "metadata": meta, "items": objs})

    # ---- watch -----------------------------------------------------------------------
    def _watch(self, req: Request, t: _Target) -> StreamResponse:
        self._check_accept(req)
        labels, fields = self._selectors(req, t.rdef)
        timeout = _int_param(req.query, "timeoutSeconds")
        rv_param = req.query.get("resourceVersion", "")
        if rv_param not in ("", "0"):
            try:
                start_rv: int | None = int(rv_param)
            except ValueError:
                raise E.bad_request(f"invalid resourceVersion {rv_param!r}") from None
        else:
            start_rv = None
        watch = WatchStream(
            store=self.store, faults=self.faults, rdef=t.rdef, namespace=t.namespace,
            out=self._out, clock=self.clock,
            bookmark_interval_s=self.settings.bookmark_interval_s,
            labels=labels, fields=fields, start_rv=start_rv,
            table=self._wants_table(req),
            bookmarks=_truthy(req.query.get("allowWatchBookmarks"))
            and "allowWatchBookmarks" in req.query,
            initial_events_end=req.query.get("sendInitialEvents") == "true",
            timeout_s=float(timeout) if timeout else self.settings.default_watch_timeout_s,
        )
        return StreamResponse(200, watch.run, JSON)

    async def _scale(self, req: Request, t: _Target, verb: str) -> Response:
        assert t.name is not None
        ns = t.namespace or ""
        if verb == "get":
            return _json(200, self.objects.get_scale(t.rdef, ns, t.name))
        opts = self._write_options(req)
        if verb == "update":
            result = self.objects.update_scale(t.rdef, ns, t.name, self._decode_body(req), opts)
        else:
            ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
            result = self.objects.patch_scale(t.rdef, ns, t.name, ctype,
                                              self._decode_body(req), opts)
        if result.rv is not None:
            await self.store.wait_durable(result.rv)
        return _json(200, result.obj)

    # ---- writes ----------------------------------------------------------------------
    def _write_options(self, req: Request) -> WriteOptions:
        dry = req.query.get("dryRun", "")
        if dry not in ("", "All"):
            raise E.bad_request(f'dryRun must be "All" or absent, got {dry!r}')
        fv = req.query.get("fieldValidation", "Warn") or "Warn"
        if fv not in ("Strict", "Warn", "Ignore"):
            raise E.bad_request(
                f'fieldValidation must be one of "Strict", "Warn", "Ignore", got {fv!r}')
        manager = req.query.get("fieldManager", "")
        if len(manager) > MAX_FIELD_MANAGER_LEN:
            raise E.bad_request(f"fieldManager {manager[:40]!r}... is longer than "
                                f"{MAX_FIELD_MANAGER_LEN} characters")
        return WriteOptions(dry_run=dry == "All", field_validation=fv, field_manager=manager)

    def _decode_body(self, req: Request, *, allow_empty: bool = False) -> Any:
        ctype = req.headers.get("content-type", JSON).split(";")[0].strip().lower() or JSON
        if not req.body.strip():
            if allow_empty:
                return None
            raise E.bad_request("the request body is empty; expected a JSON object")
        if ctype == PROTOBUF:
            try:
                return decode_object(req.body)
            except ProtobufError as exc:
                raise E.unsupported_media_type(
                    f"the body of the request was in an unknown format - accepted media "
                    f"types include: application/json, application/yaml ({exc})"
                ) from None
        if ctype in (JSON, "*/*", PatchType.MERGE, PatchType.JSON, PatchType.STRATEGIC):
            return self._parse_json(req.body)
        if ctype in ("application/yaml", PatchType.APPLY_YAML):
            return self._parse_yaml(req.body)
        raise E.unsupported_media_type(
            f"the body of the request was in an unknown format ({ctype}) - accepted media "
            "types include: application/json, application/yaml"
        )

    @staticmethod
    def _parse_json(body: bytes) -> Any:
        try:
            return fastjson.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise E.bad_request(f"the request body is not valid JSON: {exc}") from None

    @staticmethod
    def _parse_yaml(body: bytes) -> Any:
        try:
            return yaml.safe_load(body)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise E.bad_request(f"error converting YAML to JSON: {exc}") from None

    async def _write(self, req: Request, t: _Target, verb: str) -> Response:
        rdef = t.rdef
        opts = self._write_options(req)
        ns = t.namespace or ""
        if rdef.namespaced and t.namespace is None and verb in ("create",):
            raise E.method_not_allowed(
                f"{rdef.plural} are namespaced: POST to /.../namespaces/<ns>/{rdef.plural}")
        status = 200
        result: WriteResult
        if verb == "create":
            result = self.objects.create(rdef, ns, self._decode_body(req), opts, owned=True)
            status = 201
        elif verb == "update":
            assert t.name is not None
            result = self.objects.update(rdef, ns, t.name, self._decode_body(req), opts,
                                         subresource=t.subresource)
            status = 201 if result.created else 200
        elif verb == "patch":
            assert t.name is not None
            ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in PatchType.ALL:
                raise E.unsupported_media_type(
                    f"the body of the request was in an unknown format - accepted media "
                    f"types include: {', '.join(PatchType.ALL)} (got {ctype!r})")
            result = self.objects.patch(
                rdef, ns, t.name, ctype, self._decode_body(req), opts,
                subresource=t.subresource, force=_truthy(req.query.get("force")),
            )
            status = 201 if result.created else 200
        elif verb == "delete":
            assert t.name is not None
            result = self.objects.delete(rdef, ns, t.name,
                                         self._decode_body(req, allow_empty=True), opts)
        elif verb == "deletecollection":
            labels, fields = self._selectors(req, rdef)
            items, rv = self.objects.delete_collection(
                rdef, t.namespace, labels, fields,
                self._decode_body(req, allow_empty=True), opts)
            if rv is not None:
                await self.store.wait_durable(rv)
            return _json(200, {"kind": f"{rdef.kind}List", "apiVersion": rdef.api_version,
                               "metadata": {"resourceVersion": str(self.store.rv)},
                               "items": items})
        else:
            raise AssertionError(f"unhandled verb {verb}; this is a bug")
        if result.rv is not None:
            await self.store.wait_durable(result.rv)
        headers = {}
        if result.warnings:
            headers["Warning"] = ", ".join(
                '299 - "{}"'.format(w.replace('"', "'")) for w in result.warnings)
        if result.change is not None and result.obj.get("apiVersion") == rdef.api_version:
            return Response(status, result.change.obj_json(), JSON, headers)
        return _json(status, self._out(rdef, result.obj), headers=headers)
