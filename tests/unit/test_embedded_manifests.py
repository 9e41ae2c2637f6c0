"""Start-up manifests: parsing, defaults, order and errors (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from purelb.controllers.embedded_manifests import (
    KINDS,
    load_manifests,
    parse_document,
    plan_apply,
)
from purelb.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NS = "purelb-system"


def _doc(api: str, kind: str, name: str, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def test_purelb_kinds_default_to_the_install_namespace_and_services_to_default() -> None:
    sg = parse_document(_doc("purelb.io/v1", "ServiceGroup", "a"), source="f",
                        install_namespace=NS)
    svc = parse_document(_doc("v1", "Service", "web"), source="f", install_namespace=NS)
    assert (sg.namespace, svc.namespace) == (NS, "default")
    assert sg.body["metadata"]["namespace"] == NS


def test_an_explicit_namespace_is_kept() -> None:
    m = parse_document(_doc("v1", "Service", "web", "edge"), source="f", install_namespace=NS)
    assert m.namespace == "edge"


def test_cluster_scoped_kinds_have_no_namespace() -> None:
    m = parse_document(_doc("v1", "Namespace", "edge"), source="f", install_namespace=NS)
    assert m.namespace is None and "namespace" not in m.body["metadata"]


@pytest.mark.parametrize(("doc", "needle"), [
    (_doc("apps/v1", "Deployment", "x"), "apps/v1 Deployment is not a kind"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {}}, "without metadata.name"),
    (["not", "a", "mapping"], "must be a mapping"),
], ids=["unknown kind", "no name", "not a mapping"])
def test_bad_documents_are_refused_naming_the_source(doc: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_document(doc, source="gw.yaml (document 2)", install_namespace=NS)
    assert needle in str(err.value) and "gw.yaml (document 2)" in str(err.value)


def test_apply_order_puts_namespaces_first_and_services_last_adding_implied_namespaces() -> None:
    docs = [parse_document(d, source="f", install_namespace=NS) for d in (
        _doc("v1", "Service", "web", "edge"),
        _doc("purelb.io/v1", "ServiceGroup", "lan"),
        _doc("v1", "Secret", "purelb-gossip", NS),
    )]
    ordered = plan_apply(docs, install_namespace=NS)
    kinds = [m.resource.kind for m in ordered]
    assert kinds == ["Namespace", "Namespace", "Secret", "ServiceGroup", "Service"]
    assert {m.name for m in ordered if m.resource.kind == "Namespace"} == {"edge", NS}
    order = [r.kind for r in KINDS]
    assert [order.index(k) for k in kinds] == sorted(order.index(k) for k in kinds)


def test_examples_directory_loads_and_every_file_is_used() -> None:
    manifests = load_manifests([REPO / "examples"], install_namespace=NS)
    names = {(m.resource.kind, m.name) for m in manifests}
    assert {("ServiceGroup", "lan"), ("ServiceGroup", "virtual"), ("ServiceGroup", "lan-dual"),
            ("Service", "web"), ("Service", "api"), ("Service", "dns"),
            ("LBNodeAgent", "default")} <= names


def test_a_missing_config_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_manifests([tmp_path / "nope.yaml"], install_namespace=NS)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_manifests([bad], install_namespace=NS)
