"""Decoding the protobuf bodies of kubectl's create generators."""

from __future__ import annotations

import pytest

from purelb.apiserver._protobuf import MAGIC, ProtobufError, decode_object


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ld(num: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def entry(num: int, k: str, v: bytes | str) -> bytes:
    return ld(num, ld(1, k) + ld(2, v))


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw) + ld(3, "") + ld(4, "")


META = ld(1, ld(1, "c") + ld(2, "") + ld(3, "ns") + entry(11, "app", "x"))


def test_configmap_with_data_and_binary_data() -> None:
    raw = META + entry(2, "a", "b") + entry(3, "bin", b"\x00\x01")
    obj = decode_object(envelope("v1", "ConfigMap", raw))
    assert obj == {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "ns", "labels": {"app": "x"}},
                   "data": {"a": "b"}, "binaryData": {"bin": "AAE="}}


def test_secret_and_namespace_and_serviceaccount() -> None:
    raw = META + entry(2, "p", b"q") + ld(3, "Opaque")
    secret = decode_object(envelope("v1", "Secret", raw))
    assert secret["data"] == {"p": "cQ=="} and secret["type"] == "Opaque"
    ns = decode_object(envelope("v1", "Namespace", ld(1, ld(1, "foo")) + ld(2, b"")))
    assert ns["metadata"] == {"name": "foo"} and ns["spec"] == {}
    sa = decode_object(envelope("v1", "ServiceAccount", META + ld(3, ld(1, "pull"))))
    assert sa["imagePullSecrets"] == [{"name": "pull"}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"json": true}', "magic"),
        (envelope("apps/v1", "Deployment", b""), "apps/v1/Deployment"),
        (MAGIC + b"\x0a\x05ab", "past the end"),
        (MAGIC + b"\x0b", "wire type"),
    ],
    ids=["not-protobuf", "unsupported-kind", "truncated", "bad-wire-type"],
)
def test_bad_protobuf_is_refused_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message):
        decode_object(body)
