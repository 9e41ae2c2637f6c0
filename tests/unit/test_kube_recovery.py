"""The reflector's retry policy, step by step (no server, no clock)."""

from __future__ import annotations

import pytest

from purelb.kube import (
    Backoff,
    BackoffSettings,
    Gone,
    ServerError,
    TooManyRequests,
    Unauthorized,
)
from purelb.kube._recovery import Step, WatchRecovery

NO_JITTER = BackoffSettings(initial_s=1.0, factor=2.0, cap_s=8.0, jitter=0.0)
TOO_LARGE = ServerError("too large", code=504, status={
    "kind": "Status", "code": 504, "reason": "Timeout",
    "details": {"causes": [{"reason": "ResourceVersionTooLarge"}]}})

# (desc, [(event, expected Step)]) where event is "ok", "quick", "relisted" or an exception
SCENARIOS = [
    ("healthy watch ends re-watch at once",
     [("ok", Step(0.0, False)), ("ok", Step(0.0, False))]),
    ("failures back off exponentially and a healthy watch resets",
     [(ServerError("x"), Step(1.0, False)), (ServerError("x"), Step(2.0, False)),
      ("ok", Step(0.0, False)), (ServerError("x"), Step(1.0, False))]),
    ("a watch ending at once with nothing counts as a failure",
     [("quick", Step(1.0, False)), ("quick", Step(2.0, False))]),
    ("first 410 relists at once, repeated 410 backs off",
     [(Gone("g"), Step(0.0, True)), (Gone("g"), Step(1.0, True)), ("relisted", None),
      ("ok", Step(0.0, False)), (Gone("g"), Step(0.0, True))]),
    ("429 waits at least Retry-After, capped",
     [(TooManyRequests("t", retry_after_s=5.0), Step(5.0, False)),
      (TooManyRequests("t", retry_after_s=100.0), Step(8.0, False))]),
    ("three failures in a row give up the version",
     [(ServerError("x"), Step(1.0, False)), (Unauthorized("u"), Step(2.0, False)),
      ("quick", Step(4.0, True)), ("relisted", None), (ServerError("x"), Step(8.0, False))]),
    ("a version ahead of the server relists at the next attempt",
     [(TOO_LARGE, Step(1.0, True)), (ServerError("x"), Step(2.0, True)),
      ("relisted", None), ("ok", Step(0.0, False))]),
]


@pytest.mark.parametrize(("desc", "steps"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_watch_recovery(desc, steps):
    rec = WatchRecovery(Backoff(NO_JITTER), relist_after=3, retry_after_cap_s=8.0)
    for i, (event, expected) in enumerate(steps):
        if event == "relisted":
            rec.relisted()
            assert not rec.need_relist and rec.failures == 0
            continue
        if event in ("ok", "quick"):
            got = rec.watch_ended(healthy=event == "ok")
        else:
            got = rec.failed(event)
        assert got == expected, f"step {i} ({event!r}) of {desc!r}: {rec!r}"
