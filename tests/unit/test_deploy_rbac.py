"""The RBAC evaluator the manifest test relies on: bindings, scopes, wildcards, names."""

from __future__ import annotations

import pytest
import yaml

from purelb.apiserver._api import selector_name
from purelb.deploy_rbac import Request, load_policy, resource_matches, user_subjects
from purelb.errors import ConfigError

SA = "system:serviceaccount:app:bot"

DOCS = list(yaml.safe_load_all("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cr}
rules:
  - {apiGroups: [""], resources: [services], verbs: [get, list]}
  - {apiGroups: [""], resources: ["*/status"], verbs: [update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: crb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cr}
subjects: [{kind: ServiceAccount, name: bot, namespace: app}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: app}
rules:
  - {apiGroups: [""], resources: [secrets], resourceNames: [key], verbs: [get, watch]}
  - {apiGroups: ["*"], resources: ["*"], verbs: [delete]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb, namespace: app}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: bot, namespace: app}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: leases}
rules:
  - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leases, namespace: app}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leases}
subjects: [{kind: Group, name: "system:serviceaccounts:app"}]
"""))
POLICY = load_policy(DOCS)


@pytest.mark.parametrize(("req", "allowed"), [
    (Request("get", "", "services", "default", "x"), True),
    (Request("list", "", "services"), True),  # ClusterRoleBinding: all namespaces
    (Request("watch", "", "services"), False),  # verb not granted
    (Request("get", "apps", "services", "default", "x"), False),  # group must match
    (Request("get", "", "services/status", "default", "x"), False),  # sub needs its own rule
    (Request("update", "", "services/status", "default", "x"), True),  # */status
    (Request("update", "", "services", "default", "x"), False),  # */status is not the main
    (Request("get", "", "secrets", "app", "key"), True),
    (Request("get", "", "secrets", "app", "other"), False),  # resourceNames
    (Request("watch", "", "secrets", "app", ""), False),  # unnamed watch vs resourceNames
    (Request("watch", "", "secrets", "app", "key"), True),  # fieldSelector-named watch
    (Request("get", "", "secrets", "other", "key"), False),  # Role: its namespace only
    (Request("delete", "apps", "deployments", "app", "d"), True),  # "*" group and resource
    (Request("delete", "apps", "deployments", "other", "d"), False),
    (Request("create", "coordination.k8s.io", "leases", "app", ""), True),  # verb "*", group
    (Request("create", "coordination.k8s.io", "leases", "kube-system", ""), False),
])
def test_requests(req: Request, allowed: bool) -> None:
    assert POLICY.allows(SA, req) is allowed


def test_other_subjects_get_nothing() -> None:
    assert not POLICY.allows("system:serviceaccount:other:bot",
                             Request("list", "", "services"))
    assert not POLICY.allows("bot", Request("list", "", "services"))
    # the group binding covers every account of namespace app, not just bot
    assert POLICY.allows("system:serviceaccount:app:x",
                         Request("get", "coordination.k8s.io", "leases", "app", "l"))


def test_grants_enumerate_each_verb_with_its_scope() -> None:
    grants = {(g.verb, g.group, g.resource, g.namespace) for g in POLICY.grants(SA)}
    assert ("get", "", "services", None) in grants
    assert ("list", "", "services", None) in grants
    assert ("watch", "", "secrets", "app") in grants
    assert ("*", "coordination.k8s.io", "leases", "app") in grants
    assert len(POLICY.grants("nobody")) == 0


def test_binding_to_a_missing_role_grants_nothing() -> None:
    docs = [d for d in DOCS if (d["kind"], d["metadata"]["name"]) != ("ClusterRole", "cr")]
    assert not load_policy(docs).allows(SA, Request("list", "", "services"))


def test_resource_matches() -> None:
    assert resource_matches("*", "pods/log")
    assert resource_matches("*/log", "pods/log")
    assert not resource_matches("*/log", "pods")
    assert not resource_matches("pods", "pods/log")


def test_service_account_groups() -> None:
    assert ("Group", "system:serviceaccounts:app", "") in user_subjects(SA)
    assert ("ServiceAccount", "bot", "app") in user_subjects(SA)
    assert ("ServiceAccount", "bot", "app") not in user_subjects("bot")


@pytest.mark.parametrize("bad", [
    {"kind": "ClusterRole", "metadata": {"name": "x"},
     "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
    {"kind": "ClusterRole", "metadata": {"name": "x"}, "aggregationRule": {"x": 1}},
    {"kind": "Role", "metadata": {"name": "x"}, "rules": [{"verbs": ["get"]}]},
    {"kind": "Role", "metadata": {"name": "x"},
     "rules": [{"verbs": "get", "apiGroups": [""], "resources": ["pods"]}]},
    {"kind": "RoleBinding", "metadata": {"name": "x"}, "roleRef": {"kind": "User"}},
    {"kind": "ClusterRoleBinding", "metadata": {"name": "x"},
     "roleRef": {"kind": "Role", "name": "r"}},
])
def test_unmodelled_or_broken_documents_are_rejected(bad: dict) -> None:
    with pytest.raises(ConfigError):
        load_policy([{"apiVersion": "rbac.authorization.k8s.io/v1", **bad}])


@pytest.mark.parametrize(("selector", "name"), [
    ("metadata.name=purelb-gossip", "purelb-gossip"),
    ("metadata.name==k", "k"),
    ("metadata.namespace=x,metadata.name=k", "k"),
    ("metadata.name!=k", ""),  # excludes a name: not a resourceName request
    ("spec.nodeName=n1", ""),
    (None, ""),
])
def test_audit_names_a_list_by_its_exact_name_selector(selector: str | None, name: str) -> None:
    assert selector_name(selector) == name
