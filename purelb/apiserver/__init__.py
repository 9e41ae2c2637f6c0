"""A Kubernetes-compatible API server (HTTP/1.1 under Trio), memory or SQLite backed.

Good enough for kubectl 1.32 and the official Python client: discovery, OpenAPI v3 for
kubectl's validator, CRUD, watch, CRDs with schemas, Tables, Service defaulting. See
docs/architecture.md ("API server") for what is simplified.
"""

from ._api import ApiSettings as ApiSettings
from ._api import AuditKey as AuditKey
from ._api import AuditRequest as AuditRequest
from ._faults import FaultInjector as FaultInjector
from ._server import ApiServer as ApiServer
from ._server import ApiServerConfig as ApiServerConfig
from ._server import serve_apiserver as serve_apiserver
from ._store import Store as Store

__all__ = [
    "ApiServer",
    "ApiServerConfig",
    "ApiSettings",
    "AuditKey",
    "AuditRequest",
    "FaultInjector",
    "Store",
    "serve_apiserver",
]
