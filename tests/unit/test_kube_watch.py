"""Watch stream decoding (sans-I/O)."""

from __future__ import annotations

import json

import pytest

from purelb.kube import Gone, MalformedResponse, RequestContext, WatchEventType
from purelb.kube._watch import LineSplitter, decode_event

CTX = RequestContext("watch", "/api/v1/services")


def test_line_splitter_reassembles_lines_across_chunks():
    s = LineSplitter()
    assert s.feed(b'{"a"') == []
    assert s.feed(b':1}\n{"b":2}\n\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert s.pending() == 4
    assert s.feed(b":3}\n") == [b'{"c":3}']


def test_line_splitter_rejects_an_oversized_line():
    s = LineSplitter(max_line_bytes=10)
    with pytest.raises(MalformedResponse, match="exceeds 10 bytes"):
        s.feed(b"x" * 11)


def test_decode_event_types_and_errors():
    line = json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}})
    ev = decode_event(line.encode(), CTX)
    assert ev.type is WatchEventType.BOOKMARK and ev.resource_version == "7"
    err = json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                  "reason": "Expired", "message": "too old"}})
    with pytest.raises(Gone):
        decode_event(err.encode(), CTX)
    with pytest.raises(MalformedResponse, match="unknown watch event type 'NOPE'"):
        decode_event(b'{"type": "NOPE", "object": {}}', CTX)
    with pytest.raises(MalformedResponse, match="not JSON"):
        decode_event(b"{nope", CTX)
    with pytest.raises(MalformedResponse, match="no object"):
        decode_event(b'{"type": "ADDED"}', CTX)
