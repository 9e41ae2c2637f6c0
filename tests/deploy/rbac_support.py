"""Shared parts of the RBAC audit tests: the manifests' policy, per-account kubeconfigs and
the two checks (every audited request allowed; every grant used or explained)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from purelb.apiserver import AuditRequest
from purelb.deploy_rbac import Grant, Policy, Request, load_policy

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INSTALL_NS = "purelb-system"
ADMIN_TOKEN = "rbac-test-admin"
"""The test's own client (sets up objects; its requests are not checked)."""


def account(name: str) -> str:
    """The user name the API server sees for a ServiceAccount of the install namespace."""
    return f"system:serviceaccount:{INSTALL_NS}:{name}"


def policy(*files: str) -> Policy:
    docs: list = []
    for f in files:
        docs.extend(yaml.safe_load_all((DEPLOY / f).read_text()))
    return load_policy(docs)


def account_kubeconfig(admin_kubeconfig: Path, token: str, out: Path) -> Path:
    """A copy of the test server's kubeconfig that authenticates with ``token`` instead."""
    doc = yaml.safe_load(admin_kubeconfig.read_text())
    for user in doc["users"]:
        user["user"] = {"token": token}
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out


def as_request(a: AuditRequest) -> Request:
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    return Request(a.verb, a.group, resource, a.namespace, a.name)


def denied(pol: Policy, user: str, audited: Iterable[AuditRequest]) -> list[AuditRequest]:
    """Audited requests the manifests would refuse (must be empty)."""
    return sorted(a for a in audited if not pol.allows(user, as_request(a)))


def unused(pol: Policy, user: str, audited: Iterable[AuditRequest],
           allowlist: Mapping[tuple[str, str, str], str]) -> list[Grant]:
    """Grants no audited request used and the allowlist does not explain (must be empty).

    ``allowlist`` maps (verb, group, resource) to the reason the grant is kept anyway.
    """
    reqs = [as_request(a) for a in audited]
    return [g for g in pol.grants(user)
            if (g.verb, g.group, g.resource) not in allowlist
            and not any(g.allows(r) for r in reqs)]


def summary(audited: Iterable[AuditRequest]) -> list[str]:
    """``verb group/resource ns`` lines, for failure messages and the report."""
    return sorted({f"{a.verb} {a.group or 'core'}/{a.resource}"
                   f"{'/' + a.subresource if a.subresource else ''} ns={a.namespace or '*'}"
                   f"{' name=' + a.name if a.name and a.resource == 'secrets' else ''}"
                   for a in audited})
