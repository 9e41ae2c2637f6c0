"""Label and field selector parsing and matching."""

from __future__ import annotations

import pytest

from purelb.apiserver._selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "fe", "n": "5"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web, db)", True),
        ("app in (db)", False),
        ("app notin (db,cache)", True),
        ("missing notin (x)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("app=web,tier in (fe),!missing", True),
        ("app=web,tier=be", False),
        ("n>4", True),
        ("n<4", False),
        ("example.com/role", False),
    ],
)
def test_label_selector_matches_like_the_real_server(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    "text", ["app in (web", "a=b,", "=x", "app=not valid!", "n>x", "Bad Key=1", "a) in (b"]
)
def test_label_selector_rejects_malformed_text_naming_it(text: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert text in str(info.value) or "selector" in str(info.value)


def test_field_selector_matches_supported_fields_only() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}}
    fields = ("metadata.name", "metadata.namespace", "spec.nodeName")
    assert parse_field_selector("metadata.name=a", fields).matches(obj)
    assert parse_field_selector("metadata.name==a,metadata.namespace!=x", fields).matches(obj)
    assert not parse_field_selector("metadata.namespace=other", fields).matches(obj)
    assert parse_field_selector("spec.nodeName=n1", fields).matches(obj)
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.type"):
        parse_field_selector("spec.type=x", fields)
    with pytest.raises(SelectorError, match="invalid field selector"):
        parse_field_selector("metadata.name", fields)
