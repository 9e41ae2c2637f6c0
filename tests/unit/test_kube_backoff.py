"""Backoff schedules."""

from __future__ import annotations

import random

import pytest

from purelb.errors import ConfigError
from purelb.kube import Backoff, BackoffSettings, backoff_delay


def test_backoff_doubles_to_the_cap_without_jitter():
    s = BackoffSettings(initial_s=0.5, factor=2.0, cap_s=4.0, jitter=0.0)
    assert [backoff_delay(s, n, 0.9) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_stays_within_its_fraction():
    s = BackoffSettings(initial_s=1.0, cap_s=1.0, jitter=0.5)
    assert backoff_delay(s, 0, 0.0) == 0.5
    assert backoff_delay(s, 0, 0.999999) == pytest.approx(1.0)


def test_backoff_does_not_overflow_for_huge_attempt_counts():
    assert backoff_delay(BackoffSettings(jitter=0.0), 10_000, 0.5) == 30.0


def test_backoff_object_walks_and_resets():
    b = Backoff(BackoffSettings(initial_s=1.0, cap_s=8.0, jitter=0.0), rng=random.Random(1))
    assert [b.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    b.reset()
    assert b.next_delay() == 1.0


@pytest.mark.parametrize(("kw", "field"), [
    ({"initial_s": 0}, "initial_s"), ({"factor": 0.5}, "factor"),
    ({"initial_s": 5, "cap_s": 1}, "cap_s"), ({"jitter": 1.5}, "jitter")])
def test_backoff_settings_validate_naming_the_field(kw, field):
    with pytest.raises(ConfigError, match=field) as info:
        BackoffSettings(**kw)
    assert info.value.path == field
