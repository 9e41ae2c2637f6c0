"""Errors the Kubernetes client raises, and the one function that maps responses to them.

    purelb.errors.ApiError
    └── KubeApiError            carries code, reason, Status payload, verb, url, object key
        ├── ApiUnavailable      no HTTP answer: connect/read failure, timeout, TLS failure
        ├── MalformedResponse   an answer we cannot parse (not JSON, oversized watch line)
        ├── BadRequest          400 and any other 4xx not listed below
        ├── Unauthorized        401: credentials missing, wrong or expired
        ├── Forbidden           403: RBAC says no
        ├── NotFound            404: the object (or the resource type) does not exist
        ├── Conflict            409: stale resourceVersion or failed precondition; re-read, retry
        ├── AlreadyExists       409 reason AlreadyExists: create of an existing name
        ├── Gone                410 (or reason Expired): resourceVersion compacted; relist
        ├── Invalid             422: the object failed validation; ``causes`` lists the fields
        ├── TooManyRequests     429: ``retry_after_s`` from the Retry-After header
        └── ServerError         5xx: the server failed; retry with backoff

A caller branches on what it can do: retry (``ApiUnavailable``, ``ServerError``,
``TooManyRequests``), re-read (``Conflict``), relist (``Gone``), or report (the rest).

Bodies are never echoed unless they are a Kubernetes ``Status`` object, because a
proxy's HTML page or an echoed request may hold secrets; messages are truncated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from purelb.errors import ApiError

#: Longest Status message kept in an exception text, in characters. Long enough for an
#: admission webhook's explanation, short enough that a log line stays readable.
MAX_MESSAGE_CHARS = 1024

#: Largest error body we try to parse as a Status, in bytes. A real Status is < 10 KiB;
#: anything bigger is not one and is not worth holding in memory.
MAX_ERROR_BODY_BYTES = 64 * 1024

#: Most causes kept from an Invalid Status (a CRD with many bad fields can list hundreds).
MAX_CAUSES = 32


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where an error happened: the verb, the URL path and the object key if known."""

    verb: str
    url: str
    key: str = ""

    def describe(self) -> str:
        target = f" {self.key}" if self.key else ""
        return f"{self.verb}{target} ({self.url})"


@dataclass(frozen=True, slots=True)
class Cause:
    """One field-level reason from an ``Invalid`` Status (``details.causes``)."""

    field: str
    reason: str
    message: str


class KubeApiError(ApiError):
    """An error talking to the API; see the module docstring for the tree."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        reason: str = "",
        status: dict[str, Any] | None = None,
        context: RequestContext | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        """HTTP status code, or ``None`` when no answer arrived."""
        self.reason = reason
        """The Status ``reason`` (``NotFound``, ``AlreadyExists``, ...) or ``""``."""
        self.status = status
        """The Kubernetes ``Status`` object from the body, if the body was one."""
        self.context = context
        """Verb, URL and object key of the failed request."""


class ApiUnavailable(KubeApiError):
    """The API server did not answer (connection, TLS, timeout, stream broken)."""


class MalformedResponse(KubeApiError):
    """The API server answered something that is not the JSON we expect."""


class BadRequest(KubeApiError):
    """400 or another 4xx without a more specific class."""


class Unauthorized(KubeApiError):
    """401: the credentials are missing, wrong or expired."""


class Forbidden(KubeApiError):
    """403: authenticated, but RBAC does not allow this verb on this resource."""


class NotFound(KubeApiError):
    """404: the object, its namespace or the resource type does not exist."""


class Conflict(KubeApiError):
    """409: resourceVersion or precondition mismatch; re-read and retry."""


class AlreadyExists(KubeApiError):
    """409 with reason AlreadyExists: an object with this name already exists."""


class Gone(KubeApiError):
    """410: the requested resourceVersion is older than the server keeps; relist."""


class Invalid(KubeApiError):
    """422: the object failed validation; ``causes`` names the fields."""

    def __init__(self, message: str, *, causes: tuple[Cause, ...] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.causes = causes


class TooManyRequests(KubeApiError):
    """429: the server is shedding load; wait ``retry_after_s`` before retrying."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class ServerError(KubeApiError):
    """5xx: the server failed; retry with backoff."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


#: Errors worth retrying unchanged after a delay.
RETRYABLE: tuple[type[KubeApiError], ...] = (ApiUnavailable, ServerError, TooManyRequests)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only), else ``None``.

    The HTTP-date form is ignored: the API server only sends seconds, and a date would
    need the wall clock.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def parse_status(body: bytes) -> dict[str, Any] | None:
    """Return the body as a dict if, and only if, it is a Kubernetes ``Status``."""
    if not body or len(body) > MAX_ERROR_BODY_BYTES:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return data
    return None


def _truncate(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[:MAX_MESSAGE_CHARS] + f"... [{len(text) - MAX_MESSAGE_CHARS} chars cut]"


def _causes(status: dict[str, Any]) -> tuple[Cause, ...]:
    details = status.get("details")
    raw = details.get("causes") if isinstance(details, dict) else None
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw[:MAX_CAUSES]:
        if isinstance(item, dict):
            out.append(
                Cause(
                    field=str(item.get("field", "")),
                    reason=str(item.get("reason", "")),
                    message=_truncate(str(item.get("message", ""))),
                )
            )
    return tuple(out)


def map_error(
    code: int,
    *,
    status: dict[str, Any] | None,
    body_size: int,
    retry_after: str | None,
    context: RequestContext,
) -> KubeApiError:
    """Turn an HTTP error answer (or a watch ``ERROR`` Status) into one exception.

    This is the only place status codes become classes. ``status`` is the parsed
    ``Status`` body or ``None`` (then the body is described by size only, never shown).
    """
    reason = str(status.get("reason", "")) if status else ""
    if status is not None:
        detail = _truncate(str(status.get("message", "")) or reason or "no message")
    else:
        detail = f"response body of {body_size} bytes not shown (not a Kubernetes Status)"
    message = f"{context.describe()}: HTTP {code} {reason}: {detail}".replace("  ", " ")
    kw: dict[str, Any] = {"code": code, "reason": reason, "status": status, "context": context}
    retry_after_s = parse_retry_after(retry_after)
    if code == 401:
        return Unauthorized(message, **kw)
    if code == 403:
        return Forbidden(message, **kw)
    if code == 404:
        return NotFound(message, **kw)
    if code == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(message, **kw)
        return Conflict(message, **kw)
    if code == 410 or reason in ("Expired", "Gone"):
        return Gone(message, **kw)
    if code == 422:
        return Invalid(message, causes=_causes(status) if status else (), **kw)
    if code == 429:
        return TooManyRequests(message, retry_after_s=retry_after_s, **kw)
    if code >= 500:
        return ServerError(message, retry_after_s=retry_after_s, **kw)
    return BadRequest(message, **kw)
