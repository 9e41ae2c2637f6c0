"""``purelb bench agent --e2e``: the agent's figures in a namespace cluster (root).

On a fresh ``AgentLab`` (API server, allocator, three agents, client; removed afterwards):

- create -> address: POST a Service of the virtual group, time until its address is on
  node1's ``kube-lb0`` (allocation + watch + plan + netlink), ``--creates`` times;
- failover: the client probes a local IPv4 address every 10 ms; SIGKILL the holder's agent
  and take its link down (hard), or SIGTERM it (graceful); the time until another node
  answers. ``--trials`` of each; the node is restored between trials;
- agent RSS and idle CPU (``/proc``) over ``--idle`` seconds with nothing changing.

Targets (issue 7): create->address p50 <= 150 ms; hard p50 <= 1 s, p99 <= 2 s; graceful
<= 200 ms; RSS <= 60 MB; idle CPU <= 1 % of a core.
"""

from __future__ import annotations

import json
import time

from bench._procs import cpu_seconds
from bench.agent_lab import AgentLab, failover, settled_holder, wait_until

TARGETS = {"create_p50_ms": 150, "hard_p50_ms": 1000, "hard_p99_ms": 2000,
           "graceful_p50_ms": 200, "rss_mb": 60, "idle_cpu_pct": 1.0}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5)) - 1
    return ordered[min(rank, len(ordered) - 1)]


def _one_holder(lab: AgentLab, address: str) -> None:
    settled_holder(lab, address)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run_e2e(*, trials: int, creates: int, idle_s: float, json_path: str | None) -> int:
    figures: dict[str, object] = {}
    with AgentLab(nodes=3, prefix="pldb") as lab:
        create_ms: list[float] = []
        for i in range(creates):
            before = lab.addresses(1, "kube-lb0")
            began = time.monotonic()
            lab.create_service(f"bench{i}", group="virt", families=("IPv4",))
            new: set[str] = set()

            def appeared(before: set[str] = before, new: set[str] = new) -> bool:
                new |= lab.addresses(1, "kube-lb0") - before
                return bool(new)

            wait_until(appeared, 10.0, "address on kube-lb0", interval_s=0.002)
            create_ms.append((time.monotonic() - began) * 1000)
        lab.create_service("failover", group="lan", families=("IPv4",))
        (address,) = lab.ingress("failover")
        _one_holder(lab, address)
        hard_ms: list[float] = []
        graceful_ms: list[float] = []
        for i in range(trials):
            took, old, _new = failover(lab, address, hard=True)
            hard_ms.append(took * 1000)
            lab.node_restore(old)
            _one_holder(lab, address)
            took, old, _new = failover(lab, address, hard=False)
            graceful_ms.append(took * 1000)
            lab.procs[f"agent{old}"].popen.wait(timeout=5)
            lab.start_agent(old)
            _one_holder(lab, address)
            print(f"trial {i + 1}/{trials}: hard {hard_ms[-1]:.0f} ms, graceful "
                  f"{graceful_ms[-1]:.0f} ms", flush=True)
        pid = lab.procs["agent1"].popen.pid
        time.sleep(2.0)  # let the last reconcile and GARP rounds finish
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle_s)
        idle_pct = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
        rss = _rss_mb(pid)
    figures = {
        "create_p50_ms": pct(create_ms, 50), "create_p99_ms": pct(create_ms, 99),
        "hard_p50_ms": pct(hard_ms, 50), "hard_p99_ms": pct(hard_ms, 99),
        "graceful_p50_ms": pct(graceful_ms, 50), "graceful_p99_ms": pct(graceful_ms, 99),
        "rss_mb": rss, "idle_cpu_pct": idle_pct, "trials": trials, "creates": creates,
        "create_ms": create_ms, "hard_ms": hard_ms, "graceful_ms": graceful_ms,
    }
    print(f"{'figure':<18} {'value':>9} {'target':>8}")
    for key in ("create_p50_ms", "create_p99_ms", "hard_p50_ms", "hard_p99_ms",
                "graceful_p50_ms", "graceful_p99_ms", "rss_mb", "idle_cpu_pct"):
        target = TARGETS.get(key)
        value = float(figures[key])  # type: ignore[arg-type]
        mark = "" if target is None else ("ok" if value <= target else "MISSED")
        print(f"{key:<18} {value:9.1f} {'' if target is None else target:>8} {mark}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0
