"""The deployment manifests: they parse, they pass checkov, and the kustomization is complete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHECKOV = ROOT / ".venv-lint" / "bin" / "checkov"


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kustomization_lists_every_manifest_and_each_parses():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {
        str(p.relative_to(DEPLOY))
        for p in DEPLOY.rglob("*.yaml")
        if p.name != "kustomization.yaml" and "kind" not in p.relative_to(DEPLOY).parts[:1]
    }
    assert listed == on_disk
    for name in listed:
        for doc in _documents(DEPLOY / name):
            assert doc.get("apiVersion") and doc.get("kind"), f"{name}: {doc}"


def test_checkov_finds_nothing_unexplained():
    if not CHECKOV.exists():
        pytest.fail("checkov is missing: scripts/venv.sh installs it into .venv-lint")
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(DEPLOY),
            "--framework",
            "kubernetes",
                        "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 100
    # every skip carries its reason in the manifest itself
    for check in report["results"]["skipped_checks"]:
        assert check["check_result"]["suppress_comment"].strip(), check["check_id"]


@pytest.mark.parametrize("name", ["allocator.yaml", "agent.yaml"])
def test_workloads_drop_all_capabilities_and_probe_health(name):
    (workload,) = [d for d in _documents(DEPLOY / name) if d["kind"] in ("Deployment", "DaemonSet")]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    sc = container["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "limits" in container["resources"] and "requests" in container["resources"]
    if name == "agent.yaml":
        assert sorted(sc["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
        assert sc.get("privileged") is False
        assert workload["spec"]["template"]["spec"]["hostNetwork"] is True
    else:
        assert workload["spec"]["replicas"] == 2
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
