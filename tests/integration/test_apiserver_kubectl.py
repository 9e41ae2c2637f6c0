"""kubectl 1.32 (a client nobody here wrote) against our API server.

Each test gets a fresh discovery cache (``KUBECACHEDIR``): kubectl caches discovery per
host:port for hours (kubectl.md gotcha 5).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
import yaml

from purelb.apiserver.testing import TestApiServer

from .apiserver_fixtures import CRD_DIR, srv

__all__ = ["srv"]

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
MIN_KUBECTL_MINOR = 27
"""kubectl >= 1.27 validates with OpenAPI v3 and has ``patch --subresource`` (1.24); older
clients (Debian's kubernetes-client is 1.20) need the protobuf /openapi/v2, which this
server does not serve. The fidelity target is kubectl 1.32 (research/kubectl.md)."""


def _kubectl_minor() -> int | None:
    if not os.path.exists(KUBECTL):
        return None
    try:
        res = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], check=False,
                             capture_output=True, text=True, timeout=30,
                             env={**os.environ, "KUBECONFIG": os.devnull})
        minor = json.loads(res.stdout)["clientVersion"]["minor"]
        return int("".join(ch for ch in minor if ch.isdigit()))
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return None


_MINOR = _kubectl_minor()
pytestmark = pytest.mark.skipif(
    _MINOR is None or _MINOR < MIN_KUBECTL_MINOR,
    reason=f"needs kubectl >= 1.{MIN_KUBECTL_MINOR} at {KUBECTL} (found minor {_MINOR})",
)

SVC_YAML = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: https, port: 443}
"""

SG_YAML = """\
apiVersion: purelb.io/v1
kind: ServiceGroup
metadata: {name: lan}
spec:
  local:
    v4pool: {pool: 192.0.2.0/28, subnet: 192.0.2.0/24, aggregation: default}
"""

DEPLOY_YAML = """\
apiVersion: v1
kind: Namespace
metadata: {name: purelb}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: allocator, namespace: purelb}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "purelb:allocator"}
rules:
- apiGroups: [""]
  resources: [services, services/status]
  verbs: [get, list, watch, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "purelb:allocator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "purelb:allocator"}
subjects:
- {kind: ServiceAccount, name: allocator, namespace: purelb}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: allocator, namespace: purelb}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: allocator}}
  template:
    metadata: {labels: {app: allocator}}
    spec:
      serviceAccountName: allocator
      containers:
      - name: allocator
        image: purelb:IMAGE
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        ports: [{containerPort: 7472, name: metrics}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: purelb}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      hostNetwork: true
      containers:
      - name: agent
        image: purelb:IMAGE
"""


class Kubectl:
    """Runs kubectl against one server with a private cache and HOME."""

    def __init__(self, srv: TestApiServer, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "KUBECONFIG": str(srv.kubeconfig), "HOME": str(tmp),
                    "KUBECACHEDIR": str(tmp / "cache")}

    def write(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    async def run(self, *args: str, ok: bool = True, stdin: bytes | None = None
                  ) -> tuple[int, str, str]:
        with trio.fail_after(30):
            proc = await trio.run_process([KUBECTL, *args], env=self.env, check=False,
                                          capture_stdout=True, capture_stderr=True,
                                          stdin=stdin or b"")
        out, err = proc.stdout.decode(), proc.stderr.decode()
        if ok:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}: rc={proc.returncode}\n{err}"
        return proc.returncode, out, err


@pytest.fixture
def kubectl(srv: TestApiServer, tmp_path: Path) -> Kubectl:
    return Kubectl(srv, tmp_path)


async def test_kubectl_version_reports_server_1_32(kubectl: Kubectl) -> None:
    _, out, _ = await kubectl.run("version", "-o", "json")
    server = json.loads(out)["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "32")


async def test_kubectl_api_resources_lists_builtins_and_crds(kubectl: Kubectl) -> None:
    _, out, _ = await kubectl.run("api-resources")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    for name in ("services", "endpointslices", "leases", "deployments", "clusterroles",
                 "customresourcedefinitions", "servicegroups", "lbnodeagents"):
        assert name in lines
    assert "sg,sgs" in lines["servicegroups"] and "lbna,lbnas" in lines["lbnodeagents"]


async def test_kubectl_create_get_yaml_and_delete(kubectl: Kubectl) -> None:
    path = kubectl.write("svc.yaml", SVC_YAML)
    _, out, _ = await kubectl.run("create", "-f", path)
    assert out.strip() == "service/web created"
    rc, _, err = await kubectl.run("create", "-f", path, ok=False)
    assert rc == 1 and "(AlreadyExists)" in err and 'services "web" already exists' in err
    _, out, _ = await kubectl.run("get", "svc", "web", "-o", "yaml")
    obj = yaml.safe_load(out)
    assert obj["spec"]["clusterIP"].startswith("10.")
    assert all(30000 <= p["nodePort"] <= 32767 for p in obj["spec"]["ports"])
    assert obj["spec"]["ipFamilies"] == ["IPv4"]
    _, out, _ = await kubectl.run("get", "svc")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert row.split()[:4] == ["web", "LoadBalancer", obj["spec"]["clusterIP"], "<pending>"]
    _, out, _ = await kubectl.run("delete", "svc", "web")
    assert out.strip() == 'service "web" deleted'
    rc, _, err = await kubectl.run("get", "svc", "web", ok=False)
    assert rc == 1 and 'services "web" not found' in err


async def test_kubectl_apply_twice_is_unchanged_and_a_change_is_configured(
    kubectl: Kubectl,
) -> None:
    path = kubectl.write("svc.yaml", SVC_YAML)
    _, out, _ = await kubectl.run("apply", "-f", path)
    assert out.strip() == "service/web created"
    _, out, _ = await kubectl.run("apply", "-f", path)
    assert out.strip() == "service/web unchanged"
    changed = kubectl.write("svc2.yaml", SVC_YAML.replace("targetPort: 8080", "targetPort: 9090")
                            .replace("  - {name: https, port: 443}\n", ""))
    _, out, _ = await kubectl.run("apply", "-f", changed)
    assert out.strip() == "service/web configured"
    _, out, _ = await kubectl.run("get", "svc", "web", "-o", "json")
    ports = json.loads(out)["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(80, 9090)]


async def test_kubectl_apply_deployment_manifests_twice(kubectl: Kubectl) -> None:
    path = kubectl.write("deploy.yaml", DEPLOY_YAML)
    _, out, _ = await kubectl.run("apply", "-f", path)
    assert len(out.strip().splitlines()) == 6 and "created" in out
    _, out, _ = await kubectl.run("apply", "-f", path)
    assert [line.split()[-1] for line in out.strip().splitlines()] == ["unchanged"] * 6
    changed = kubectl.write("deploy2.yaml", DEPLOY_YAML.replace(
        'env: [{name: A, value: "1"}, {name: B, value: "2"}]', 'env: [{name: B, value: "3"}]'))
    _, out, _ = await kubectl.run("apply", "-f", changed)
    assert "deployment.apps/allocator configured" in out
    _, out, _ = await kubectl.run("get", "deploy", "allocator", "-n", "purelb", "-o", "json")
    dep = json.loads(out)
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B",
                                                                         "value": "3"}]
    assert dep["metadata"]["generation"] == 2


async def test_kubectl_servicegroup_short_names_printer_columns_and_status(
    kubectl: Kubectl,
) -> None:
    path = kubectl.write("sg.yaml", SG_YAML)
    _, out, _ = await kubectl.run("apply", "-f", path)
    assert out.strip() == "servicegroup.purelb.io/lan created"
    _, out, _ = await kubectl.run("apply", "-f", path)
    assert out.strip() == "servicegroup.purelb.io/lan unchanged"
    status = {"status": {"announce": "Local", "allocatedIPv4": 3, "addresses": ["192.0.2.0/28"]}}
    _, out, _ = await kubectl.run("patch", "sg", "lan", "--subresource=status", "--type",
                                  "merge", "-p", json.dumps(status))
    assert out.strip() == "servicegroup.purelb.io/lan patched"
    _, out, _ = await kubectl.run("get", "sg")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "ANNOUNCE", "IPAM", "ALLOCATED-V4", "ALLOCATED-V6", "AGE"]
    assert row.split()[:3] == ["lan", "Local", "3"]
    _, out, _ = await kubectl.run("get", "sgs", "-o", "wide")
    assert "ADDRESSES" in out.splitlines()[0] and "192.0.2.0/28" in out
    _, out, _ = await kubectl.run("patch", "sg", "lan", "--type", "merge", "-p",
                                  '{"spec":{"local":{"balancePools":true}}}')
    assert out.strip() == "servicegroup.purelb.io/lan patched"
    _, out, _ = await kubectl.run("patch", "sg", "lan", "--type", "merge", "-p",
                                  '{"spec":{"local":{"balancePools":true}}}')
    assert out.strip() == "servicegroup.purelb.io/lan patched (no change)"
    _, out, _ = await kubectl.run("get", "sg", "lan", "-o", "json")
    obj = json.loads(out)
    assert obj["metadata"]["generation"] == 2 and obj["status"]["announce"] == "Local"
    lbna = kubectl.write("lbna.yaml", "apiVersion: purelb.io/v1\nkind: LBNodeAgent\n"
                         "metadata: {name: default}\nspec: {local: {sendgarp: true}}\n")
    await kubectl.run("create", "-f", lbna)
    _, out, _ = await kubectl.run("get", "lbna")
    assert out.splitlines()[1].split()[:3] == ["default", "default", "kube-lb0"]


async def test_kubectl_shows_schema_violations_as_field_errors(kubectl: Kubectl) -> None:
    bad = kubectl.write("bad.yaml", SG_YAML.replace("aggregation: default",
                                                    "aggregation: '24'"))
    rc, _, err = await kubectl.run("create", "-f", bad, ok=False)
    assert rc == 1
    assert 'The ServiceGroup "lan" is invalid' in err
    assert "spec.local.v4pool.aggregation" in err
    unknown = kubectl.write("unknown.yaml", SG_YAML + "  extra: 1\n")
    rc, _, err = await kubectl.run("create", "-f", unknown, ok=False)
    assert rc == 1 and 'unknown field "spec.extra"' in err


async def test_kubectl_crd_created_at_runtime_is_usable_at_once(
    kubectl: Kubectl, srv: TestApiServer
) -> None:
    crd = yaml.safe_load((CRD_DIR / "servicegroup.yaml").read_text())
    crd["metadata"]["name"] = "widgets.example.com"
    crd["spec"]["group"] = "example.com"
    crd["spec"]["names"] = {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]}
    await kubectl.run("apply", "-f", kubectl.write("crd.yaml", yaml.safe_dump(crd)))
    await kubectl.run("wait", "--for=condition=Established", "crd/widgets.example.com",
                      "--timeout=10s")
    await kubectl.run("apply", "-f", kubectl.write("wd.yaml", SG_YAML.replace(
        "purelb.io/v1", "example.com/v1").replace("ServiceGroup", "Widget")))
    _, out, _ = await kubectl.run("get", "wd", "-o", "name")
    assert out.strip() == "widget.example.com/lan"


async def test_kubectl_get_watch_receives_concurrent_changes(
    kubectl: Kubectl, srv: TestApiServer
) -> None:
    path = kubectl.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seen}\n"
                         "data: {a: '1'}\n")
    await kubectl.run("create", "-f", path)
    lines: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            proc = await trio.lowlevel.open_process(
                [KUBECTL, "get", "cm", "-w"], env=kubectl.env, stdout=subprocess.PIPE)
            nursery.start_soon(_kill_on_exit, proc)
            await srv.faults.wait_open_watches(1)
            nursery.start_soon(kubectl.run, "patch", "cm", "seen", "--type", "merge", "-p",
                               '{"data":{"b":"2"}}')
            buf = b""
            assert proc.stdout is not None
            while sum("seen" in line for line in lines) < 2:
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, f"kubectl ended early: {lines}"
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines += [d.decode() for d in done]
            srv.faults.drop_watches()  # a clean end of stream: get -w exits 0
            assert await proc.wait() == 0
            nursery.cancel_scope.cancel()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert lines[1].split()[:2] == ["seen", "1"]
    assert lines[2].split()[:2] == ["seen", "2"]


async def _kill_on_exit(proc: trio.Process) -> None:
    """Kill the process when the test's nursery ends, even on failure."""
    try:
        await trio.sleep_forever()
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


async def test_kubectl_create_generators_work_for_simple_kinds(kubectl: Kubectl) -> None:
    """kubectl 1.32 sends protobuf here; the simple kinds are decoded, others get 415."""
    await kubectl.run("create", "namespace", "gen")
    await kubectl.run("create", "configmap", "c", "-n", "gen", "--from-literal=a=b")
    await kubectl.run("create", "secret", "generic", "s", "-n", "gen", "--from-literal=p=q")
    await kubectl.run("create", "serviceaccount", "sa", "-n", "gen")
    _, out, _ = await kubectl.run("get", "cm,secret,sa", "-n", "gen", "-o", "name")
    assert out.split() == ["configmap/c", "secret/s", "serviceaccount/sa"]
    rc, _, err = await kubectl.run("create", "deployment", "d", "--image=x", ok=False)
    assert rc == 1 and "apps/v1/Deployment" in err


async def test_kubectl_delete_waits_for_finalizers_through_a_filtered_watch(
    kubectl: Kubectl, srv: TestApiServer
) -> None:
    """delete --wait lists and watches with fieldSelector=metadata.name (kubectl.md §8)."""
    path = kubectl.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n"
                         "  finalizers: [example.com/hold]\n")
    await kubectl.run("create", "-f", path)
    await kubectl.run("create", "-f", kubectl.write("other.yaml", "apiVersion: v1\n"
                                                   "kind: ConfigMap\nmetadata: {name: other}\n"))
    result: list[tuple[int, str, str]] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def delete() -> None:
                result.append(await kubectl.run("delete", "cm", "held", "--timeout=20s"))

            nursery.start_soon(delete)
            await srv.faults.wait_open_watches(1)
            # A change to another object must not end the wait; removing the finalizer must.
            await kubectl.run("label", "cm", "other", "x=y")
            await kubectl.run("patch", "cm", "held", "--type", "json", "-p",
                              '[{"op": "remove", "path": "/metadata/finalizers"}]')
    assert result[0][1].strip() == 'configmap "held" deleted'
    rc, _, err = await kubectl.run("get", "cm", "held", ok=False)
    assert rc == 1 and "NotFound" in err
    records = srv.server.audit_records("system:anonymous")
    assert ("watch", "", "configmaps", "", "default") in records


async def test_kubectl_server_side_apply_and_conflicts(kubectl: Kubectl) -> None:
    path = kubectl.write("sg.yaml", SG_YAML)
    _, out, _ = await kubectl.run("apply", "--server-side", "-f", path)
    assert out.strip() == "servicegroup.purelb.io/lan serverside-applied"
    _, out, _ = await kubectl.run("apply", "--server-side", "-f", path)
    assert out.strip() == "servicegroup.purelb.io/lan serverside-applied"
    other = kubectl.write("sg2.yaml", SG_YAML.replace("192.0.2.0/28", "192.0.2.16/28"))
    rc, _, err = await kubectl.run("apply", "--server-side", "--field-manager", "other", "-f",
                                   other, ok=False)
    assert rc == 1 and "conflict" in err.lower() and ".spec.local.v4pool.pool" in err
    await kubectl.run("apply", "--server-side", "--field-manager", "other",
                      "--force-conflicts", "-f", other)
    _, out, _ = await kubectl.run("get", "sg", "lan", "-o", "jsonpath={.spec.local.v4pool.pool}")
    assert out == "192.0.2.16/28"


async def test_kubectl_label_diff_and_replace_with_a_stale_version(kubectl: Kubectl) -> None:
    path = kubectl.write("svc.yaml", SVC_YAML)
    await kubectl.run("apply", "-f", path)
    _, out, _ = await kubectl.run("get", "svc", "web", "-o", "yaml")
    stale = kubectl.write("stale.yaml", out)
    _, out, _ = await kubectl.run("label", "svc", "web", "tier=fe")
    assert out.strip() == "service/web labeled"
    changed = kubectl.write("changed.yaml", SVC_YAML.replace("targetPort: 8080",
                                                             "targetPort: 9999"))
    rc, out, _ = await kubectl.run("diff", "-f", changed, ok=False)
    assert rc == 1 and "9999" in out
    _, out, _ = await kubectl.run("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].targetPort}")
    assert out == "8080", "diff must not persist (dryRun=All)"
    rc, _, err = await kubectl.run("replace", "-f", stale, ok=False)
    assert rc == 1 and "(Conflict)" in err and "the object has been modified" in err


async def test_kubectl_scale_uses_the_scale_subresource(kubectl: Kubectl) -> None:
    await kubectl.run("apply", "-f", kubectl.write("deploy.yaml", DEPLOY_YAML))
    _, out, _ = await kubectl.run("scale", "deploy/allocator", "-n", "purelb", "--replicas=3")
    assert out.strip() == "deployment.apps/allocator scaled"
    _, out, _ = await kubectl.run("get", "deploy", "allocator", "-n", "purelb", "-o",
                                  "jsonpath={.spec.replicas} {.metadata.generation}")
    assert out == "3 2"
    _, out, _ = await kubectl.run("get", "--raw",
                                  "/apis/apps/v1/namespaces/purelb/deployments/allocator/scale")
    scale = json.loads(out)
    assert scale["kind"] == "Scale" and scale["status"]["selector"] == "app=allocator"
