"""AgentSettings: validation names the field and value; spec_for picks the options."""

from __future__ import annotations

import ipaddress

import pytest

from purelb.agent.records import IFA_F_NODAD, IFA_F_NOPREFIXROUTE, AddressKind
from purelb.agent.settings import MAX_FINITE_LIFETIME_S, AgentSettings, VirtualKind
from purelb.errors import ConfigError


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("garp_count", -1),
        ("garp_interval_s", -0.5),
        ("local_valid_lft_s", 1),
        ("virtual_interface", "x" * 16),
        ("virtual_interface", "a/b"),
        ("address_proto", 3),
        ("address_proto", 256),
        ("netlink_batch", 0),
        ("netlink_rcvbuf_bytes", 1024),
    ],
)
def test_settings_reject_an_invalid_field_naming_it(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"AgentSettings.{field}=") as info:
        AgentSettings(**{field: value})  # type: ignore[arg-type]
    assert info.value.path == f"AgentSettings.{field}"
    assert info.value.value == value


def test_virtual_addresses_are_permanent_and_nodad_on_ipv6_only() -> None:
    s = AgentSettings()
    v4 = s.spec_for(AddressKind.VIRTUAL, 5, ipaddress.ip_interface("192.0.2.1/32"))
    v6 = s.spec_for(AddressKind.VIRTUAL, 5, ipaddress.ip_interface("2001:db8::1/128"))
    assert (v4.flags, v4.valid_lft_s) == (0, None)
    assert (v6.flags, v6.valid_lft_s) == (IFA_F_NODAD, None)


def test_local_addresses_get_noprefixroute_lifetime_and_v6_deprecated() -> None:
    s = AgentSettings()
    v4 = s.spec_for(AddressKind.LOCAL, 2, ipaddress.ip_interface("172.31.255.9/24"))
    v6 = s.spec_for(AddressKind.LOCAL, 2, ipaddress.ip_interface("fd00:db8:ff::9/64"))
    assert (v4.flags, v4.valid_lft_s, v4.preferred_lft_s) == (IFA_F_NOPREFIXROUTE, 300, None)
    assert v6.flags == IFA_F_NODAD | IFA_F_NOPREFIXROUTE
    assert (v6.valid_lft_s, v6.preferred_lft_s) == (300, 0)


def test_permanent_local_v6_still_gets_a_finite_valid_lifetime_to_be_deprecated() -> None:
    s = AgentSettings(local_valid_lft_s=None, noprefixroute=False)
    v6 = s.spec_for(AddressKind.LOCAL, 2, ipaddress.ip_interface("fd00::9/64"))
    assert (v6.valid_lft_s, v6.preferred_lft_s, v6.flags) == (MAX_FINITE_LIFETIME_S, 0, IFA_F_NODAD)


def test_local_preset_derives_from_the_base() -> None:
    s = AgentSettings(garp_count=5).local()
    assert (s.garp_count, s.virtual_kind) == (5, VirtualKind.IFB)
    assert s.garp_interval_s < AgentSettings().garp_interval_s


def test_max_reconcile_interval_is_half_the_local_lifetime() -> None:
    assert AgentSettings(local_valid_lft_s=300).max_reconcile_interval_s == 150
    assert AgentSettings(local_valid_lft_s=None).max_reconcile_interval_s is None
