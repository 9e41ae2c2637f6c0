"""Just enough Kubernetes protobuf to accept what ``kubectl create <generator>`` sends.

kubectl 1.32's create generators (namespace, configmap, secret, serviceaccount, ...) POST
``application/vnd.kubernetes.protobuf`` and never fall back to JSON (kubectl.md §10). The
body is the magic ``k8s\\0`` and a ``runtime.Unknown`` {1 TypeMeta{1 apiVersion, 2 kind},
2 raw object bytes, 3 contentEncoding, 4 contentType}. This module decodes the protobuf
wire format and the four simple kinds (field numbers from k8s.io/api core/v1
generated.proto) into the same JSON objects a JSON client would send. Any other kind is
refused with :class:`ProtobufError` (the server answers 415 naming the kind).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"k8s\x00"
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """The body is not decodable protobuf of a supported kind; the message says why."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint longer than 64 bits")


def fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field; value is int or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == _VARINT:
            val, pos = _varint(buf, pos)
            yield num, wt, val
        elif wt == _LEN:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ProtobufError(f"field {num} runs past the end of the message")
            yield num, wt, buf[pos:pos + n]
            pos += n
        elif wt == _I64:
            pos += 8
        elif wt == _I32:
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wt} in field {num}")
    if pos != len(buf):
        raise ProtobufError("truncated message")


def _str(v: Any) -> str:
    if not isinstance(v, bytes):
        raise ProtobufError("expected a length-delimited string")
    try:
        return v.decode()
    except UnicodeDecodeError:
        raise ProtobufError("a string field is not valid UTF-8") from None


def _entry(v: bytes) -> tuple[str, bytes]:
    key, val = "", b""
    for num, _, x in fields(v):
        if num == 1:
            key = _str(x)
        elif num == 2:
            val = x if isinstance(x, bytes) else b""
    return key, val


def _meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for num, _, v in fields(buf):
        if num in names:
            if text := _str(v):  # proto2 optional strings arrive even when empty
                meta[names[num]] = text
        elif num in (11, 12):
            k, val = _entry(v)
            meta.setdefault("labels" if num == 11 else "annotations", {})[k] = val.decode()
        elif num == 14:
            meta.setdefault("finalizers", []).append(_str(v))
    return meta


def _namespace(buf: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for num, _, v in fields(buf):
        if num == 1:
            obj["metadata"] = _meta(v)
        elif num == 2:
            fins = [_str(x) for n, _, x in fields(v) if n == 1]
            obj["spec"] = {"finalizers": fins} if fins else {}
    return obj


def _configmap(buf: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for num, _, v in fields(buf):
        if num == 1:
            obj["metadata"] = _meta(v)
        elif num == 2:
            k, val = _entry(v)
            obj.setdefault("data", {})[k] = val.decode()
        elif num == 3:
            k, val = _entry(v)
            obj.setdefault("binaryData", {})[k] = base64.b64encode(val).decode()
        elif num == 4:
            obj["immutable"] = bool(v)
    return obj


def _secret(buf: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for num, _, v in fields(buf):
        if num == 1:
            obj["metadata"] = _meta(v)
        elif num == 2:
            k, val = _entry(v)
            obj.setdefault("data", {})[k] = base64.b64encode(val).decode()
        elif num == 3:
            obj["type"] = _str(v)
        elif num == 4:
            k, val = _entry(v)
            obj.setdefault("stringData", {})[k] = val.decode()
        elif num == 5:
            obj["immutable"] = bool(v)
    return obj


def _serviceaccount(buf: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    ref_names = {1: "kind", 2: "namespace", 3: "name", 4: "uid", 5: "apiVersion",
                 6: "resourceVersion", 7: "fieldPath"}
    for num, _, v in fields(buf):
        if num == 1:
            obj["metadata"] = _meta(v)
        elif num == 2:
            ref = {ref_names[n]: _str(x) for n, _, x in fields(v) if n in ref_names}
            obj.setdefault("secrets", []).append(ref)
        elif num == 3:
            names = [_str(x) for n, _, x in fields(v) if n == 1]
            obj.setdefault("imagePullSecrets", []).append({"name": names[-1] if names else ""})
        elif num == 4:
            obj["automountServiceAccountToken"] = bool(v)
    return obj


_KINDS: dict[tuple[str, str], Callable[[bytes], dict[str, Any]]] = {
    ("v1", "Namespace"): _namespace,
    ("v1", "ConfigMap"): _configmap,
    ("v1", "Secret"): _secret,
    ("v1", "ServiceAccount"): _serviceaccount,
}


def decode_object(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded object as the JSON object a JSON client would have sent.

    Raises:
        ProtobufError: not the ``k8s\\0`` envelope, malformed, or an unsupported kind.
    """
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic k8s\\0")
    api_version = kind = ""
    raw = b""
    for num, _, v in fields(body[len(MAGIC):]):
        if num == 1:
            for n, _, x in fields(v):
                if n == 1:
                    api_version = _str(x)
                elif n == 2:
                    kind = _str(x)
        elif num == 2:
            raw = v
        elif num == 3 and v:
            raise ProtobufError(f"content encoding {_str(v)!r} is not supported")
    decoder = _KINDS.get((api_version, kind))
    if decoder is None:
        raise ProtobufError(
            f"protobuf bodies are accepted for {', '.join(k for _, k in _KINDS)} only, not "
            f"{api_version}/{kind}: use `kubectl create -f` or `kubectl apply -f` instead"
        )
    obj = decoder(raw)
    obj["apiVersion"] = api_version
    obj["kind"] = kind
    obj.setdefault("metadata", {})
    return obj
