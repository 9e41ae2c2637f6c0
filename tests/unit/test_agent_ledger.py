"""The ownership state file used where the kernel has no IFA_PROTO."""

from __future__ import annotations

import json
import pathlib

import pytest

from purelb.agent.ledger import Ledger, ledger_path
from purelb.errors import ConfigError


def test_ledger_round_trips_and_prunes_absent_addresses(tmp_path):
    path = ledger_path(str(tmp_path / "state"), "/run/netns/node1")
    assert path.endswith("addresses-node1.json")
    led = Ledger.load(path)
    led.claim([(3, "10.0.0.1/32"), (3, "10.0.0.2/32")])
    again = Ledger.load(path)
    assert (3, "10.0.0.1/32") in again and len(again) == 2
    again.retain([(3, "10.0.0.2/32")])
    assert len(Ledger.load(path)) == 1
    again.forget([(3, "10.0.0.2/32")])
    assert json.loads(pathlib.Path(path).read_text())["addresses"] == []


@pytest.mark.parametrize("body", ["{", '{"version": 99, "addresses": []}',
                                  '{"version": 1, "addresses": [["x", 1]]}'])
def test_ledger_refuses_a_file_it_did_not_write(tmp_path, body):
    path = tmp_path / "addresses-host.json"
    path.write_text(body)
    with pytest.raises(ConfigError, match=str(path)):
        Ledger.load(str(path))
