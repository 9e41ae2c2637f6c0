"""Random sequences of Service and config changes against the allocator (hypothesis).

The machine plays the daemon: it keeps a small "cluster" of Services, applies every
Decision to it (ingress + annotations), reconciles requeued Services, and now and then
restarts -- a fresh Allocator imports the cluster and must rebuild exactly the same state.
A twin allocator receives the same calls and must return the same decisions.

Invariants after every step:
* an address is held by two Services only under the same non-empty key with disjoint
  (protocol, port) pairs; one address per family per Service;
* stats in use equal the distinct held addresses per group and family;
* what the cluster shows (ingress) is exactly what the allocator holds;
* a failed reconcile never adds an address (RequireDualStack never half-allocated), and a
  successful RequireDualStack reconcile holds both families;
* restart + import reproduces the snapshot exactly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from purelb.ipam.allocator import Allocator
from purelb.ipam.decision import Decision, Outcome
from purelb.model import IPFamilyPolicy, Service
from purelb.model import annotations as ann
from tests.unit._ipam_helpers import check_invariants, pool, sg, svc

#: examples per run; override with PURELB_STATEFUL_EXAMPLES for a long soak
MAX_EXAMPLES = int(os.environ.get("PURELB_STATEFUL_EXAMPLES", "300"))
#: steps per example: enough to fill the small pools and free them again
STEPS = 40
#: a requeue chain longer than this means Services requeue each other forever (a bug)
MAX_REQUEUE_ROUNDS = 20

# small pools so exhaustion, sharing and orphaning happen often
CONFIGS: list[list[dict[str, Any]]] = [
    [
        sg("default", v4=[pool("10.0.0.0/30", "10.0.0.0/24")],
           v6=[pool("fd00::/126", "fd00::/64")]),
        sg("other", v4=[pool("10.1.0.0/31", "10.1.0.0/24")]),
    ],
    [
        sg("default", v4=[pool("10.0.0.2/31", "10.0.0.0/24")],
           v6=[pool("fd00::/127", "fd00::/64")]),
        sg("other", v4=[pool("10.1.0.0/30", "10.1.0.0/24")]),
    ],
    [
        sg("default", v4=[pool("10.0.0.0/29", "10.0.0.0/24")], balancePools=True),
        sg("other", v6=[pool("fd00::/126", "fd00::/64")], v4=[pool("10.1.0.0/32", "10.1.0.0/24")]),
    ],
    [sg("default", v4=[pool("10.0.0.1-10.0.0.2", "10.0.0.0/24")])],
]

NAMES = [f"s{i}" for i in range(6)]
PORTS = ["TCP/80", "TCP/443", "UDP/53"]

service_specs = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["LoadBalancer"] * 5 + ["ClusterIP"]),
        "key": st.sampled_from([None, None, "k1", "k2"]),
        "ports": st.lists(st.sampled_from(PORTS), min_size=1, max_size=2, unique=True).map(tuple),
        "policy": st.sampled_from([None, "SingleStack", "PreferDualStack", "RequireDualStack"]),
        "families": st.sampled_from([(), ("IPv4",), ("IPv6",), ("IPv4", "IPv6"), ("IPv6", "IPv4")]),
        "group": st.sampled_from([None, None, "other", "missing"]),
        "addresses": st.sampled_from(
            [None] * 6 + ["10.0.0.1", "10.0.0.3", "fd00::2", "10.0.0.1,fd00::2", "10.1.0.1",
                          "192.0.2.1", "bogus"]
        ),
        "etp": st.sampled_from([None, "Local"]),
        "cls": st.sampled_from([None] * 8 + ["example.com/other"]),
    }
)


class IpamMachine(RuleBasedStateMachine):
    examples: ClassVar[int] = 0
    steps: ClassVar[int] = 0
    restarts: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.config = CONFIGS[0]
        self.cluster: dict[str, Service] = {}
        self.alloc = self._fresh([])
        self.twin = self._fresh([])

    def _fresh(self, services: list[Service]) -> Allocator:
        alloc = Allocator()
        alloc.set_config(self.config)
        result = alloc.import_services(services)
        assert not result.conflicts, result.conflicts
        return alloc

    @initialize(config=st.sampled_from(range(len(CONFIGS))))
    def choose_config(self, config: int) -> None:
        self.config = CONFIGS[config]
        self.alloc = self._fresh([])
        self.twin = self._fresh([])

    # ------------------------------------------------------------------ driving

    def _reconcile(self, service: Service) -> Decision:
        before = dict(self.alloc.holdings(service.key))
        decision = self.alloc.reconcile(service)
        assert self.twin.reconcile(service) == decision  # same inputs, same outputs
        after = self.alloc.holdings(service.key)
        if decision.failure is not None:
            assert set(after.items()) <= set(before.items()), (before, after, decision)
        if (
            decision.outcome is Outcome.OK
            and service.ip_family_policy is IPFamilyPolicy.REQUIRE_DUAL_STACK
        ):
            assert set(after) == {4, 6}, (after, decision)
        self._apply(service, decision)
        return decision

    def _apply(self, service: Service, decision: Decision) -> None:
        annotations = dict(service.annotations)
        annotations.update(decision.annotations_set)
        for k in decision.annotations_remove:
            annotations.pop(k, None)
        ingress = service.ingress if decision.ingress is None else decision.ingress
        self.cluster[service.name] = dataclasses.replace(
            service, annotations=annotations, ingress=tuple(ingress)
        )

    def _drain(self, requeue: tuple[str, ...]) -> None:
        pending = list(requeue)
        for _round in range(MAX_REQUEUE_ROUNDS):
            if not pending:
                return
            more: list[str] = []
            for key in dict.fromkeys(pending):
                name = key.split("/", 1)[1]
                if name in self.cluster:
                    more.extend(self._reconcile(self.cluster[name]).requeue)
            pending = more
        raise AssertionError(f"requeue did not settle: {pending}")

    # ------------------------------------------------------------------ rules

    @rule(name=st.sampled_from(NAMES), spec=service_specs)
    def create_or_update(self, name: str, spec: dict[str, Any]) -> None:
        type(self).steps += 1
        old = self.cluster.get(name)
        written = {
            k: v
            for k, v in (old.annotations if old else {}).items()
            if k in (ann.ALLOCATED_BY, ann.ALLOCATED_FROM, ann.POOL_TYPE)
        }
        service = svc(
            name,
            type=spec["type"],
            key=spec["key"],
            ports=spec["ports"],
            policy=spec["policy"],
            families=spec["families"],
            group=spec["group"],
            addresses=spec["addresses"],
            etp=spec["etp"],
            cls=spec["cls"],
            ingress=old.ingress if old else (),
            annotations=written,
        )
        decision = self._reconcile(service)
        self._drain(decision.requeue)

    @rule(name=st.sampled_from(NAMES))
    def delete(self, name: str) -> None:
        type(self).steps += 1
        service = self.cluster.pop(name, None)
        if service is None:
            return
        decision = self.alloc.release(service.key)
        assert self.twin.release(service.key) == decision
        assert not self.alloc.holdings(service.key)
        self._drain(decision.requeue)

    @rule(config=st.sampled_from(range(len(CONFIGS))))
    def change_config(self, config: int) -> None:
        type(self).steps += 1
        self.config = CONFIGS[config]
        before = {k: dict(self.alloc.holdings(k)) for k in self._keys()}
        result = self.alloc.set_config(self.config)
        assert self.twin.set_config(self.config) == result
        # a config change never moves or revokes an allocation
        assert {k: dict(self.alloc.holdings(k)) for k in self._keys()} == before
        self._drain(result.requeue)

    @rule()
    def restart_and_import(self) -> None:
        type(self).steps += 1
        type(self).restarts += 1
        snapshot = self.alloc.snapshot()
        self.alloc = self._fresh(list(self.cluster.values()))
        self.twin = self._fresh(list(self.cluster.values()))
        assert self.alloc.snapshot() == snapshot

    def _keys(self) -> list[Any]:
        return [s.key for s in self.cluster.values()]

    # ------------------------------------------------------------------ invariants

    @invariant()
    def allocator_invariants(self) -> None:
        check_invariants(self.alloc)

    @invariant()
    def cluster_shows_what_the_allocator_holds(self) -> None:
        held_keys = {row[0] for row in self.alloc.snapshot()}
        for service in self.cluster.values():
            held = self.alloc.holdings(service.key)
            if service.load_balancer_class not in (None, ann.LOAD_BALANCER_CLASS):
                assert not held
                continue
            shown = {ipaddress.ip_address(ip) for ip in service.ingress}
            assert shown == set(held.values()), (service, held)
            assert bool(held) == (service.annotations.get(ann.ALLOCATED_BY) == ann.BRAND)
        assert held_keys <= {s.key for s in self.cluster.values()}


def test_ipam_state_machine() -> None:
    IpamMachine.examples = IpamMachine.steps = IpamMachine.restarts = 0
    run_state_machine_as_test(
        IpamMachine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print(
        f"\nipam stateful: {IpamMachine.examples} examples, {IpamMachine.steps} steps, "
        f"{IpamMachine.restarts} restarts"
    )
    assert IpamMachine.examples >= MAX_EXAMPLES // 2
