"""LBNodeAgent view: parsing, validation messages, settings and the choice among several."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from purelb.agent import DEFAULT_AGENT_SETTINGS, VirtualKind
from purelb.model import InvalidField, choose_config, parse_lbnodeagent

CRD = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "crds" / "lbnodeagent.yaml"


def lbna(name="default", ns="purelb-system", **local):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"local": local}}


def test_defaults_match_purelb_v1():
    cfg = parse_lbnodeagent(lbna())
    assert (cfg.local_interface, cfg.virtual_interface, cfg.send_garp) == (
        "default", "kube-lb0", False)
    assert cfg.settings(DEFAULT_AGENT_SETTINGS).garp_count == 0


def test_improvements_become_agent_settings():
    cfg = parse_lbnodeagent(lbna(localint="eth.*", extlbint="lb9", extlbintKind="ifb",
                                 sendgarp=True, garpCount=5, garpInterval="250ms",
                                 addressConfig={"localInterface": {"validLifetime": 0,
                                                                   "noPrefixRoute": False}}))
    s = cfg.settings(DEFAULT_AGENT_SETTINGS)
    assert (s.virtual_interface, s.virtual_kind, s.garp_count, s.garp_interval_s) == (
        "lb9", VirtualKind.IFB, 5, 0.25)
    assert s.local_valid_lft_s is None and s.noprefixroute is False


@pytest.mark.parametrize(("field", "value", "path"), [
    ("localint", "eth[", "spec.local.localint"),
    ("extlbint", "a/b", "spec.local.extlbint"),
    ("extlbintKind", "vrf", "spec.local.extlbintKind"),
    ("garpCount", 11, "spec.local.garpCount"),
    ("garpInterval", "1h", "spec.local.garpInterval"),
    ("sendgarp", "yes", "spec.local.sendgarp"),
    ("addressConfig", {"localInterface": {"validLifetime": 30}},
     "spec.local.addressConfig.localInterface.validLifetime"),
])
def test_bad_fields_are_refused_naming_the_path_and_value(field, value, path):
    with pytest.raises(InvalidField) as info:
        parse_lbnodeagent(lbna(**{field: value}))
    shown = value["localInterface"]["validLifetime"] if field == "addressConfig" else value
    assert info.value.path == path and repr(shown) in str(info.value)


def test_choose_config_takes_the_first_valid_by_name_and_reports_the_rest():
    choice = choose_config([lbna("zz"), lbna("bad", localint="("), lbna("aa", sendgarp=True)])
    assert choice.config is not None and choice.config.name == "aa"
    reasons = dict(choice.ignored)
    assert reasons["purelb-system/bad"].startswith("invalid")
    assert "aa" in reasons["purelb-system/zz"]
    assert choose_config([]).config is None


def test_crd_schema_declares_every_field_the_parser_reads():
    crd = yaml.safe_load(CRD.read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["local"]["properties"]
    for name in ("localint", "extlbint", "extlbintKind", "sendgarp", "garpCount",
                 "garpInterval", "addressConfig"):
        assert name in props, name
    assert props["extlbintKind"]["enum"] == [k.value for k in VirtualKind]
    nic = props["addressConfig"]["properties"]["localInterface"]["properties"]
    assert {"validLifetime", "noPrefixRoute"} <= set(nic)
