"""The one status -> exception mapping, and what error messages may contain."""

from __future__ import annotations

import json

import pytest

from purelb.errors import ApiError
from purelb.kube import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    RequestContext,
    ServerError,
    TooManyRequests,
    Unauthorized,
    map_error,
)
from purelb.kube._errors import MAX_MESSAGE_CHARS, parse_retry_after, parse_status
from purelb.kube._watch import watch_error

CTX = RequestContext("get", "/api/v1/namespaces/a/services/web", "a/web")


def status(code: int, reason: str, message: str = "m", **extra) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message, **extra}


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (400, "BadRequest", BadRequest),
        (401, "Unauthorized", Unauthorized),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (405, "MethodNotAllowed", BadRequest),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (410, "Expired", Gone),
        (410, "Gone", Gone),
        (422, "Invalid", Invalid),
        (429, "TooManyRequests", TooManyRequests),
        (500, "InternalError", ServerError),
        (503, "ServiceUnavailable", ServerError),
        (504, "Timeout", ServerError),
    ],
)
def test_map_error_gives_the_class_for_each_code_and_reason(code, reason, cls):
    err = map_error(code, status=status(code, reason), body_size=10, retry_after=None,
                    context=CTX)
    assert type(err) is cls
    assert isinstance(err, ApiError)
    assert err.code == code and err.reason == reason and err.status["code"] == code
    assert err.context is CTX
    assert "get a/web (/api/v1/namespaces/a/services/web)" in str(err)


def test_map_error_never_echoes_a_body_that_is_not_a_status():
    body = b"<html>password=hunter2</html>"
    err = map_error(502, status=parse_status(body), body_size=len(body), retry_after=None,
                    context=CTX)
    assert isinstance(err, ServerError)
    assert "hunter2" not in str(err) and "html" not in str(err)
    assert f"{len(body)} bytes not shown" in str(err)
    assert err.status is None


def test_parse_status_accepts_only_kind_status():
    assert parse_status(json.dumps({"kind": "Secret", "data": {"x": "y"}}).encode()) is None
    assert parse_status(b"not json") is None
    assert parse_status(json.dumps(status(404, "NotFound")).encode())["reason"] == "NotFound"


def test_map_error_truncates_long_status_messages():
    err = map_error(500, status=status(500, "InternalError", "x" * 5000), body_size=5000,
                    retry_after=None, context=CTX)
    assert len(str(err)) < MAX_MESSAGE_CHARS + 200
    assert "chars cut" in str(err)


def test_invalid_keeps_field_causes():
    st = status(422, "Invalid", "Service is invalid", details={"causes": [
        {"field": "spec.ports[0].port", "reason": "FieldValueInvalid", "message": "bad port"}]})
    err = map_error(422, status=st, body_size=1, retry_after=None, context=CTX)
    assert isinstance(err, Invalid)
    assert err.causes[0].field == "spec.ports[0].port"
    assert err.causes[0].reason == "FieldValueInvalid"


@pytest.mark.parametrize(("header", "expected"),
                         [("3", 3.0), (" 0.5 ", 0.5), ("-1", None), ("nan", None),
                          ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)])
def test_parse_retry_after_accepts_only_non_negative_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_too_many_requests_carries_retry_after():
    err = map_error(429, status=None, body_size=0, retry_after="7", context=CTX)
    assert isinstance(err, TooManyRequests) and err.retry_after_s == 7.0


def test_watch_error_event_with_410_maps_to_gone():
    err = watch_error(status(410, "Expired", "too old resource version: 1 (5)"), CTX)
    assert isinstance(err, Gone)
    assert "too old resource version" in str(err)


def test_watch_error_event_without_status_is_a_server_error():
    assert isinstance(watch_error({"kind": "Weird"}, CTX), ServerError)
