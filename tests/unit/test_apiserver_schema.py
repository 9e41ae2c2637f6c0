"""CRD schema handling: pruning, defaulting, validation, and the shipped CRDs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from purelb.apiserver._crd import validate_crd
from purelb.apiserver._errors import StatusError
from purelb.apiserver._schema import SchemaError, StructuralSchema

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["port"],
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "note": {"type": "string", "nullable": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                         "properties": {"known": {"type": "object",
                                                  "properties": {"x": {"type": "integer"}}}}},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {"type": "array", "items": {"type": "object",
                                                     "properties": {"n": {"type": "integer"}}}},
            },
        },
    },
}


def test_pruning_drops_unknown_fields_but_keeps_preserved_ones() -> None:
    s = StructuralSchema(SCHEMA)
    obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "top": 1,
           "spec": {"port": 1, "bogus": 2, "free": {"any": {"thing": 1},
                                                    "known": {"x": 1, "drop": 2}},
                    "tags": {"a": "b"}, "items": [{"n": 1, "m": 2}]}}
    pruned, dropped = s.prune(obj)
    assert sorted(dropped) == ["spec.bogus", "spec.free.known.drop", "spec.items[0].m", "top"]
    assert pruned["spec"]["free"]["any"] == {"thing": 1}
    assert pruned["spec"]["tags"] == {"a": "b"} and pruned["metadata"] == {"name": "a"}
    assert "bogus" in obj["spec"], "the input was mutated"


def test_defaults_fill_absent_fields_only() -> None:
    s = StructuralSchema(SCHEMA)
    assert s.default({"spec": {"port": 1}})["spec"]["mode"] == "a"
    assert s.default({"spec": {"port": 1, "mode": "b"}})["spec"]["mode"] == "b"


@pytest.mark.parametrize(
    ("spec", "reason", "field"),
    [
        ({}, "FieldValueRequired", "spec.port"),
        ({"port": 1.5}, "FieldValueInvalid", "spec.port"),
        ({"port": "http", "mode": "c"}, "FieldValueNotSupported", "spec.mode"),
        ({"port": 1, "items": [{"n": "x"}]}, "FieldValueTypeInvalid", "spec.items[0].n"),
    ],
    ids=["required", "int-or-string-rejects-float", "enum", "nested-type"],
)
def test_validation_names_the_field(spec: dict, reason: str, field: str) -> None:
    causes = StructuralSchema(SCHEMA).validate({"spec": spec})
    assert [(c.reason, c.field) for c in causes] == [(reason, field)]


def test_nullable_and_int_or_string_accept_their_values() -> None:
    s = StructuralSchema(SCHEMA)
    assert s.validate({"spec": {"port": "http", "note": None}}) == []
    assert s.validate({"spec": {"port": 8080}}) == []


def test_unusable_schema_is_rejected() -> None:
    with pytest.raises(SchemaError):
        StructuralSchema({"type": "object", "properties": {"a": {"type": 7}}})


def _load(name: str) -> dict:
    return yaml.safe_load((CRDS / name).read_text())


def test_shipped_crds_define_their_resources() -> None:
    (sg,) = validate_crd(_load("servicegroup.yaml"))
    assert (sg.group, sg.version, sg.plural, sg.kind) == ("purelb.io", "v1", "servicegroups",
                                                         "ServiceGroup")
    assert sg.short_names == ("sg", "sgs") and sg.namespaced and sg.has_status
    assert [c["name"] for c in sg.printer_columns][:4] == ["Announce", "IPAM", "Allocated-V4",
                                                           "Allocated-V6"]
    (lbna,) = validate_crd(_load("lbnodeagent.yaml"))
    assert lbna.short_names == ("lbna", "lbnas")


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ({"local": {"v4pool": {"pool": "192.0.2.0/28", "subnet": "192.0.2.0/24"}}}, True),
        ({"local": {"subnet": "192.0.2.0/24", "pool": "192.0.2.1-192.0.2.9",
                    "aggregation": "/32"}}, True),
        ({"local": {"v6pools": [{"pool": "fd00::/120", "subnet": "fd00::/64",
                                 "aggregation": "/128"}], "balancePools": True}}, True),
        ({"netbox": {"url": "https://netbox", "tenant": "lb"}}, True),
        ({"local": {}, "netbox": {"url": "u", "tenant": "t"}}, False),
        ({}, False),
        ({"netbox": {"url": "u"}}, False),
        ({"local": {"v4pool": {"pool": "x", "subnet": "y", "aggregation": "24"}}}, False),
        ({"local": {"v4pool": {"pool": "x", "subnet": "y", "aggregation": "/129"}}}, False),
    ],
    ids=["v4pool", "legacy-top-level", "v6pools", "netbox", "both", "neither",
         "netbox-without-tenant", "aggregation-without-slash", "aggregation-too-long"],
)
def test_servicegroup_schema_accepts_and_rejects(spec: dict, ok: bool) -> None:
    (sg,) = validate_crd(_load("servicegroup.yaml"))
    assert sg.schema is not None
    causes = sg.schema.validate({"spec": spec})
    assert (causes == []) is ok, causes


def test_lbnodeagent_defaults_legacy_fields() -> None:
    (lbna,) = validate_crd(_load("lbnodeagent.yaml"))
    assert lbna.schema is not None
    out = lbna.schema.default({"spec": {"local": {}}})
    assert out["spec"]["local"] == {"localint": "default", "extlbint": "kube-lb0",
                                    "sendgarp": False}


def test_invalid_crds_are_rejected_with_causes() -> None:
    crd = _load("servicegroup.yaml")
    crd["metadata"]["name"] = "wrong"
    crd["spec"]["scope"] = "Galaxy"
    with pytest.raises(StatusError) as err:
        validate_crd(crd)
    assert err.value.code == 422
    assert {c["field"] for c in err.value.details["causes"]} == {"metadata.name", "spec.scope"}
