"""Kubernetes client for purelb: config, typed verbs, watches, reflectors, events.

Layers (each module has one job)::

    _config      kubeconfig / in-cluster -> ClusterConfig; TLS context; rotating token
    _resources   Resource descriptors and URL paths
    _selectors   label/field selector encoding
    _errors      the error tree and the one status -> exception mapping
    _ratelimit   client-side token bucket (trio clock)
    _backoff     named retry schedules with cap and jitter
    _watch       sans-I/O watch line decoding
    _client      KubeClient: verbs over httpx (no httpx exception escapes)
    _cli         shared --kubeconfig/--context/--kube-qps options
    _cache       Store with indexes; diff_snapshot (pure relist diff)
    _recovery    the reflector's retry policy (pure): backoff, relist on 410 or repeated failure
    _reflector   Reflector: list, watch, relist on 410, emit changes
    _events      EventRecorder with series aggregation
    _lease       one Lease as leader-election storage (controllers.leadership decides)
"""

from ._backoff import DEFAULT_BACKOFF as DEFAULT_BACKOFF
from ._backoff import Backoff as Backoff
from ._backoff import BackoffSettings as BackoffSettings
from ._backoff import backoff_delay as backoff_delay
from ._cache import ENDPOINTSLICE_BY_SERVICE as ENDPOINTSLICE_BY_SERVICE
from ._cache import SERVICE_NAME_LABEL as SERVICE_NAME_LABEL
from ._cache import Change as Change
from ._cache import ChangeKind as ChangeKind
from ._cache import Indexer as Indexer
from ._cache import ObjectKey as ObjectKey
from ._cache import Store as Store
from ._cache import diff_snapshot as diff_snapshot
from ._cache import index_by_label as index_by_label
from ._cache import index_by_namespace as index_by_namespace
from ._cache import object_key as object_key
from ._cli import add_kube_arguments as add_kube_arguments
from ._cli import client_from_args as client_from_args
from ._cli import config_from_args as config_from_args
from ._cli import settings_from_args as settings_from_args
from ._client import DEFAULT_CLIENT_SETTINGS as DEFAULT_CLIENT_SETTINGS
from ._client import ClientSettings as ClientSettings
from ._client import KubeClient as KubeClient
from ._client import PatchType as PatchType
from ._client import WatchStream as WatchStream
from ._client import user_agent as user_agent
from ._config import ClusterConfig as ClusterConfig
from ._config import TokenSource as TokenSource
from ._config import load_config as load_config
from ._config import load_incluster_config as load_incluster_config
from ._config import load_kubeconfig as load_kubeconfig
from ._config import make_ssl_context as make_ssl_context
from ._errors import AlreadyExists as AlreadyExists
from ._errors import ApiUnavailable as ApiUnavailable
from ._errors import BadRequest as BadRequest
from ._errors import Cause as Cause
from ._errors import Conflict as Conflict
from ._errors import Forbidden as Forbidden
from ._errors import Gone as Gone
from ._errors import Invalid as Invalid
from ._errors import KubeApiError as KubeApiError
from ._errors import MalformedResponse as MalformedResponse
from ._errors import NotFound as NotFound
from ._errors import RequestContext as RequestContext
from ._errors import ServerError as ServerError
from ._errors import TooManyRequests as TooManyRequests
from ._errors import Unauthorized as Unauthorized
from ._errors import map_error as map_error
from ._events import EventOutcome as EventOutcome
from ._events import EventRecorder as EventRecorder
from ._events import EventSettings as EventSettings
from ._events import EventType as EventType
from ._events import micro_time as micro_time
from ._lease import LeaseObject as LeaseObject
from ._ratelimit import DEFAULT_RATE_LIMIT as DEFAULT_RATE_LIMIT
from ._ratelimit import RateLimiter as RateLimiter
from ._ratelimit import RateLimitSettings as RateLimitSettings
from ._reflector import DEFAULT_REFLECTOR_SETTINGS as DEFAULT_REFLECTOR_SETTINGS
from ._reflector import Reflector as Reflector
from ._reflector import ReflectorSettings as ReflectorSettings
from ._reflector import ReflectorStatistics as ReflectorStatistics
from ._resources import CONFIG_MAPS as CONFIG_MAPS
from ._resources import ENDPOINT_SLICES as ENDPOINT_SLICES
from ._resources import EVENTS as EVENTS
from ._resources import LB_NODE_AGENTS as LB_NODE_AGENTS
from ._resources import LEASES as LEASES
from ._resources import NAMESPACES as NAMESPACES
from ._resources import NODES as NODES
from ._resources import PODS as PODS
from ._resources import SECRETS as SECRETS
from ._resources import SERVICE_GROUPS as SERVICE_GROUPS
from ._resources import SERVICES as SERVICES
from ._resources import Resource as Resource
from ._selectors import encode_field_selector as encode_field_selector
from ._selectors import encode_label_selector as encode_label_selector
from ._watch import WatchEvent as WatchEvent
from ._watch import WatchEventType as WatchEventType

__all__ = [
    "CONFIG_MAPS",
    "DEFAULT_BACKOFF",
    "DEFAULT_CLIENT_SETTINGS",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_REFLECTOR_SETTINGS",
    "ENDPOINTSLICE_BY_SERVICE",
    "ENDPOINT_SLICES",
    "EVENTS",
    "LB_NODE_AGENTS",
    "LEASES",
    "NAMESPACES",
    "NODES",
    "PODS",
    "SECRETS",
    "SERVICES",
    "SERVICE_GROUPS",
    "SERVICE_NAME_LABEL",
    "AlreadyExists",
    "ApiUnavailable",
    "Backoff",
    "BackoffSettings",
    "BadRequest",
    "Cause",
    "Change",
    "ChangeKind",
    "ClientSettings",
    "ClusterConfig",
    "Conflict",
    "EventOutcome",
    "EventRecorder",
    "EventSettings",
    "EventType",
    "Forbidden",
    "Gone",
    "Indexer",
    "Invalid",
    "KubeApiError",
    "KubeClient",
    "LeaseObject",
    "MalformedResponse",
    "NotFound",
    "ObjectKey",
    "PatchType",
    "RateLimitSettings",
    "RateLimiter",
    "Reflector",
    "ReflectorSettings",
    "ReflectorStatistics",
    "RequestContext",
    "Resource",
    "ServerError",
    "Store",
    "TokenSource",
    "TooManyRequests",
    "Unauthorized",
    "WatchEvent",
    "WatchEventType",
    "WatchStream",
    "add_kube_arguments",
    "backoff_delay",
    "client_from_args",
    "config_from_args",
    "diff_snapshot",
    "encode_field_selector",
    "encode_label_selector",
    "index_by_label",
    "index_by_namespace",
    "load_config",
    "load_incluster_config",
    "load_kubeconfig",
    "make_ssl_context",
    "map_error",
    "micro_time",
    "object_key",
    "settings_from_args",
    "user_agent",
]
