"""Every ServiceGroup field the CRD schema admits is read by the model parser.

A field in the schema that the code ignores would be accepted by the API server and then
silently do nothing. For each property of ``spec.local`` and ``spec.netbox`` we give a
valid object a wrongly-typed value for that property and expect the parser to name it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from purelb.model import parse_service_group
from purelb.model._errors import InvalidField

CRD = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "servicegroup.yaml"
SCHEMA = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]["properties"]

META = {"name": "g", "namespace": "purelb-system"}
MODERN = {"v4pool": {"pool": "192.0.2.0/28", "subnet": "192.0.2.0/24", "aggregation": "default"}}
LEGACY = {"subnet": "192.0.2.0/24", "pool": "192.0.2.0/28", "aggregation": "default"}
NETBOX = {"url": "http://127.0.0.1:8001", "tenant": "t", "aggregation": "default"}
WRONG = {"string": {"not": "a string"}, "boolean": "yes", "object": 5, "array": 5}


def _doc(section: str, body: dict) -> dict:
    return {
        "apiVersion": "purelb.io/v1",
        "kind": "ServiceGroup",
        "metadata": dict(META),
        "spec": {section: copy.deepcopy(body)},
    }


CASES = [("local", name, prop["type"]) for name, prop in SPEC["local"]["properties"].items()] + [
    ("netbox", name, prop["type"]) for name, prop in SPEC["netbox"]["properties"].items()
]


def test_the_valid_bases_parse():
    for section, body in (("local", MODERN), ("local", LEGACY), ("netbox", NETBOX)):
        parse_service_group(_doc(section, body))


@pytest.mark.parametrize(("section", "name", "kind"), CASES, ids=[f"{s}.{n}" for s, n, _ in CASES])
def test_every_schema_property_is_read_by_the_model(section, name, kind):
    base = NETBOX if section == "netbox" else LEGACY if name in LEGACY else MODERN
    doc = _doc(section, base)
    doc["spec"][section][name] = WRONG[kind]
    with pytest.raises(InvalidField) as info:
        parse_service_group(doc)
    assert info.value.path.startswith(f"spec.{section}."), info.value.path
