"""The API server's error type: every failure becomes a Kubernetes ``Status`` body.

Handlers raise :class:`StatusError`; the HTTP layer turns it into the JSON Status the
real kube-apiserver sends (kind, apiVersion, status Failure, reason, code, message,
details). kubectl builds its messages from ``reason`` and ``message``, and for 422 from
``details.kind``, ``details.name`` and ``details.causes`` (kubectl.md §9), so those are
always filled in where the real server fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from purelb.errors import ApiError


@dataclass(frozen=True, slots=True)
class Cause:
    """One field-level problem inside a 422 Invalid (``details.causes[]``)."""

    reason: str
    """FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueDuplicate..."""
    message: str
    field: str

    def as_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


class StatusError(ApiError):
    """An API request failed; carries everything needed for the Status reply."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The Status object for the response body."""
        return status_object(self.code, self.reason, self.message, details=self.details)

    def __repr__(self) -> str:
        return f"StatusError({self.code}, {self.reason!r}, {self.message!r})"


def status_object(
    code: int, reason: str, message: str, *, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Failure Status in the exact shape of the real server."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _details(resource: str, name: str, group: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    return d


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        details=_details(resource, name, group),
    )


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        details=_details(resource, name, group),
    )


def conflict(resource: str, name: str, group: str = "", why: str = "") -> StatusError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        details=_details(resource, name, group),
    )


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> StatusError:
    """422 Invalid; ``kind`` is the Kind (kubectl prints ``The Service "web" is invalid``)."""
    text = "; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
    qual = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [c.as_json() for c in causes],
    }
    if group:
        details["group"] = group
    return StatusError(422, "Invalid", f'{qual} "{name}" is invalid: {text}', details=details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_allowed(message: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media_type(message: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", message)


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def too_large(limit_bytes: int) -> StatusError:
    return StatusError(
        413, "RequestEntityTooLarge", f"the request body exceeds the limit of {limit_bytes} bytes"
    )


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def no_such_path(path: str) -> StatusError:
    return StatusError(
        404, "NotFound", f"the server could not find the requested resource ({path})"
    )


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")

