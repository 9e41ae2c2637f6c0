"""Kubernetes RBAC evaluation of manifests, so tests can check deploy/rbac-*.yaml.

Given the Roles, ClusterRoles and their bindings (parsed YAML documents), answer whether a
user may make a request, the way the real RBAC authorizer does:

* a ClusterRoleBinding grants its ClusterRole's rules everywhere (any namespace and
  cluster-scoped resources); a RoleBinding grants its Role's (or a ClusterRole's) rules
  only in the binding's namespace;
* a rule matches when the verb, API group and resource match (``*`` matches anything;
  ``*/sub`` matches subresource ``sub`` of any resource; a resource without a subresource
  in the rule never matches a subresource request) and, when the rule lists
  ``resourceNames``, the request names one of them (so a ``create`` or an unnamed
  ``list``/``watch`` never matches such a rule);
* a ServiceAccount ``system:serviceaccount:<ns>:<name>`` also has the groups
  ``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and ``system:authenticated``.

Pure: no I/O. Deliberately not modelled: aggregated ClusterRoles and nonResourceURLs
(PureLB's manifests use neither; :func:`load_policy` rejects them so a test cannot pass by
ignoring a rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from purelb.errors import ConfigError

RBAC_GROUP = "rbac.authorization.k8s.io"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True, slots=True)
class Request:
    """One resource request: ``resource`` is ``"res"`` or ``"res/sub"``; ``namespace`` is
    "" for cluster-scoped or all-namespace requests; ``name`` "" when none is named."""

    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """One PolicyRule of a Role or ClusterRole."""

    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str] = frozenset()

    def allows(self, req: Request) -> bool:
        return (("*" in self.verbs or req.verb in self.verbs)
                and ("*" in self.groups or req.group in self.groups)
                and any(resource_matches(r, req.resource) for r in self.resources)
                and (not self.names or req.name in self.names))


@dataclass(frozen=True, slots=True)
class Grant:
    """One (verb, group, resource) a binding gives, where it applies (namespace None =
    everywhere, from a ClusterRoleBinding) and the names it is limited to."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    names: frozenset[str]
    source: str
    """``Kind/name`` of the role, for messages."""

    def allows(self, req: Request) -> bool:
        if self.namespace is not None and req.namespace != self.namespace:
            return False
        return Rule(frozenset({self.verb}), frozenset({self.group}), frozenset({self.resource}),
                    self.names).allows(req)


def resource_matches(rule_resource: str, requested: str) -> bool:
    """The authorizer's ResourceMatches: ``*``, exact ``res[/sub]``, or ``*/sub``."""
    if rule_resource in ("*", requested):
        return True
    _, slash, sub = requested.partition("/")
    return bool(slash) and rule_resource == f"*/{sub}"


def user_subjects(user: str) -> set[tuple[str, str, str]]:
    """(kind, name, namespace) a binding subject must equal to name this user."""
    subjects = {("User", user, ""), ("Group", "system:authenticated", "")}
    if user.startswith(SA_PREFIX):
        ns, _, name = user[len(SA_PREFIX):].partition(":")
        subjects |= {("ServiceAccount", name, ns), ("Group", "system:serviceaccounts", ""),
                     ("Group", f"system:serviceaccounts:{ns}", "")}
    return subjects


@dataclass(frozen=True, slots=True)
class Policy:
    """Roles and bindings of a set of manifests."""

    roles: Mapping[tuple[str, str, str], tuple[Rule, ...]]
    """(kind, namespace or "", name) -> rules."""
    bindings: tuple[tuple[str, str, str, str, frozenset[tuple[str, str, str]]], ...]
    """(binding namespace or "" for a ClusterRoleBinding, roleRef kind, roleRef name,
    binding name, subjects)."""

    def grants(self, user: str) -> list[Grant]:
        """Every (verb, group, resource) the user holds, one Grant each."""
        who = user_subjects(user)
        out: list[Grant] = []
        for bind_ns, kind, role, _name, subjects in self.bindings:
            if not who & subjects:
                continue
            role_ns = bind_ns if kind == "Role" else ""
            for rule in self.roles.get((kind, role_ns, role), ()):
                for verb in sorted(rule.verbs):
                    for group in sorted(rule.groups):
                        for res in sorted(rule.resources):
                            out.append(Grant(verb, group, res, bind_ns or None, rule.names,
                                             f"{kind}/{role}"))
        return out

    def allows(self, user: str, req: Request) -> bool:
        """Whether RBAC lets ``user`` make ``req`` (deny by default, as RBAC does)."""
        return any(g.allows(req) for g in self.grants(user))


def _strings(doc: Mapping[str, Any], rule: Mapping[str, Any], key: str) -> frozenset[str]:
    value = rule.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{doc.get('kind')} {_name(doc)}: rule field {key} must be a list of "
                          f"strings, got {value!r}", path=key, value=value)
    return frozenset(value)


def _name(doc: Mapping[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def load_policy(docs: Iterable[Mapping[str, Any] | None]) -> Policy:
    """Build a :class:`Policy` from manifest documents (others are ignored).

    Raises:
        ConfigError: a rule with nonResourceURLs or an aggregationRule (not modelled), a
            rule without verbs/apiGroups/resources, or a binding without a roleRef.
    """
    roles: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
    bindings = []
    for doc in docs:
        if not doc or not str(doc.get("apiVersion", "")).startswith(RBAC_GROUP):
            continue
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        ns = "" if kind in ("ClusterRole", "ClusterRoleBinding") else meta.get("namespace", "")
        if kind in ("Role", "ClusterRole"):
            if doc.get("aggregationRule"):
                raise ConfigError(f"{kind} {_name(doc)}: aggregationRule is not modelled",
                                  path="aggregationRule", value=doc["aggregationRule"])
            rules = []
            for raw in doc.get("rules") or []:
                if raw.get("nonResourceURLs"):
                    raise ConfigError(f"{kind} {_name(doc)}: nonResourceURLs are not modelled",
                                      path="nonResourceURLs", value=raw["nonResourceURLs"])
                rule = Rule(_strings(doc, raw, "verbs"), _strings(doc, raw, "apiGroups"),
                            _strings(doc, raw, "resources"), _strings(doc, raw, "resourceNames"))
                if not (rule.verbs and rule.groups and rule.resources):
                    raise ConfigError(f"{kind} {_name(doc)}: a rule needs verbs, apiGroups and "
                                      f"resources, got {raw!r}", path="rules", value=raw)
                rules.append(rule)
            roles[(kind, ns, _name(doc))] = tuple(rules)
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            ref = doc.get("roleRef") or {}
            if ref.get("kind") not in ("Role", "ClusterRole") or not ref.get("name"):
                raise ConfigError(f"{kind} {_name(doc)}: roleRef must name a Role or "
                                  f"ClusterRole, got {ref!r}", path="roleRef", value=ref)
            if kind == "ClusterRoleBinding" and ref["kind"] == "Role":
                raise ConfigError(f"{kind} {_name(doc)}: a ClusterRoleBinding cannot bind a "
                                  "Role", path="roleRef", value=ref)
            subjects = frozenset(
                (s.get("kind", ""), s.get("name", ""),
                 s.get("namespace", "") if s.get("kind") == "ServiceAccount" else "")
                for s in doc.get("subjects") or [])
            bindings.append((ns, ref["kind"], ref["name"], _name(doc), subjects))
    return Policy(roles, tuple(bindings))
