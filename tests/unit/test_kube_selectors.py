"""Label and field selector encoding."""

from __future__ import annotations

import pytest

from purelb.kube import encode_field_selector, encode_label_selector


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", "app=web"),
        ({"app": "web", "purelb.io/group": "default"}, "app=web,purelb.io/group=default"),
        ({"matchLabels": {"a": "1"}}, "a=1"),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
         "tier in (a,b)"),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]},
         "tier notin (x)"),
        ({"matchLabels": {"a": "1"},
          "matchExpressions": [{"key": "b", "operator": "Exists"},
                               {"key": "c", "operator": "DoesNotExist"}]}, "a=1,b,!c"),
        ({"a": ""}, "a="),
    ],
)
def test_label_selector_encodes(selector, expected):
    assert encode_label_selector(selector) == expected


@pytest.mark.parametrize(
    ("selector", "match"),
    [
        ({"bad key!": "x"}, "bad key!"),
        ({"a": "has space"}, "has space"),
        ({"a": 3}, "must be a str"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "at least one"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
         "must not have values"),
        ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, "'Gt'"),
        (["a=b"], "str or a mapping"),
    ],
)
def test_label_selector_rejects_bad_input_naming_the_value(selector, match):
    with pytest.raises((ValueError, TypeError), match=match):
        encode_label_selector(selector)


def test_field_selector_encodes_mappings_and_rejects_injection():
    assert encode_field_selector({"metadata.name": "web", "spec.type": "LoadBalancer"}) == (
        "metadata.name=web,spec.type=LoadBalancer")
    assert encode_field_selector("metadata.namespace!=x") == "metadata.namespace!=x"
    with pytest.raises(ValueError, match="'a,b=c'"):
        encode_field_selector({"metadata.name": "a,b=c"})
    with pytest.raises(ValueError, match="field path"):
        encode_field_selector({"meta data": "x"})
