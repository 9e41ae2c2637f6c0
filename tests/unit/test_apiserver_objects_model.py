"""Random write sequences against the object layer, checked against a plain dict model.

After every step: the listing equals the model, resourceVersions only go up, and replaying
the change log from the start rebuilds exactly the current state (what a watcher from
resourceVersion 0 would see).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from purelb.apiserver._errors import StatusError
from purelb.apiserver._objects import Objects, PatchType, WriteOptions
from purelb.apiserver._resources import Registry
from purelb.apiserver._services import ServiceAllocator
from purelb.apiserver._store import EventType, Store

NAMES = st.sampled_from(["a", "b", "c"])
VALUES = st.sampled_from(["1", "2"])
OPTS = WriteOptions()


class ObjectsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store(history_limit=10_000)
        self.registry = Registry.with_builtins()
        self.objects = Objects(self.store, self.registry, ServiceAllocator(),
                               clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
        self.objects.bootstrap_namespaces(("default",))
        self.rdef = self.registry.get("", "v1", "configmaps")
        self.model: dict[str, dict[str, str]] = {}
        self.finalized: set[str] = set()
        self.last_rv = self.store.rv

    def _expect(self, ok: bool, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            res = fn(*args, **kw)
        except StatusError as exc:
            assert not ok, f"unexpected {exc!r}"
            return None
        assert ok, "expected a failure"
        return res

    @rule(name=NAMES, value=VALUES, hold=st.booleans())
    def create(self, name: str, value: str, hold: bool) -> None:
        meta: dict = {"name": name}
        if hold:
            meta["finalizers"] = ["x/hold"]
        body = {"metadata": meta, "data": {"k": value}}
        if self._expect(name not in self.model, self.objects.create, self.rdef, "default", body,
                        OPTS):
            self.model[name] = {"k": value}
            if hold:
                self.finalized.add(name)

    @rule(name=NAMES, value=VALUES)
    def patch(self, name: str, value: str) -> None:
        if self._expect(name in self.model, self.objects.patch, self.rdef, "default", name,
                        PatchType.MERGE, {"data": {"k": value}}, OPTS):
            self.model[name] = {"k": value}

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        if self._expect(name in self.model, self.objects.delete, self.rdef, "default", name,
                        None, OPTS) and name not in self.finalized:
            del self.model[name]

    @rule(name=NAMES)
    def release(self, name: str) -> None:
        if name in self.model and name in self.finalized:
            self.objects.patch(self.rdef, "default", name, PatchType.MERGE,
                               {"metadata": {"finalizers": None}}, OPTS)
            self.finalized.discard(name)
            obj = self.store.get(self.rdef.storage_key, "default", name)
            if obj is None:  # it was being deleted: dropping the last finalizer finished it
                del self.model[name]

    @invariant()
    def listing_matches_model(self) -> None:
        listed = {o["metadata"]["name"]: o.get("data") for o in self.store.list(
            self.rdef.storage_key, "default")}
        assert listed == self.model

    @invariant()
    def versions_only_go_up_and_replay_rebuilds_state(self) -> None:
        assert self.store.rv >= self.last_rv
        self.last_rv = self.store.rv
        state: dict[str, dict] = {}
        rvs = []
        for ch in self.store.changes_after(0):
            rvs.append(ch.rv)
            if ch.storage_key != self.rdef.storage_key:
                continue
            if ch.type is EventType.DELETED:
                del state[ch.name]
            else:
                state[ch.name] = ch.obj
        assert rvs == sorted(set(rvs))
        assert state == {o["metadata"]["name"]: o for o in self.store.list(
            self.rdef.storage_key, "default")}


ObjectsModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],  # the machine is shared
)
TestObjectsModel = ObjectsModel.TestCase
