"""Typed, validated views of the Kubernetes objects purelb reads.

Raw JSON dicts are parsed here, once, at the edge; the core (``purelb.ipam``) only sees
these frozen values. Every parse failure is an :class:`InvalidField` naming the field path,
the value and a stable :class:`Reason`.
"""

from purelb.ipam.pool import AddressRange as AddressRange
from purelb.model import _annotations as annotations
from purelb.model._addresses import FAMILY_BITS as FAMILY_BITS
from purelb.model._addresses import IPAddress as IPAddress
from purelb.model._addresses import IPNetwork as IPNetwork
from purelb.model._addresses import address_from_int as address_from_int
from purelb.model._addresses import family_name as family_name
from purelb.model._addresses import parse_address as parse_address
from purelb.model._addresses import parse_cidr as parse_cidr
from purelb.model._addresses import parse_range as parse_range
from purelb.model._annotations import parse_addresses as parse_addresses
from purelb.model._errors import InvalidField as InvalidField
from purelb.model._errors import Reason as Reason
from purelb.model._service import IPFamilyPolicy as IPFamilyPolicy
from purelb.model._service import Service as Service
from purelb.model._service import ServiceKey as ServiceKey
from purelb.model._service import ServicePort as ServicePort
from purelb.model._service import parse_service as parse_service
from purelb.model._service import service_key as service_key
from purelb.model._service_group import AddressPool as AddressPool
from purelb.model._service_group import GroupSet as GroupSet
from purelb.model._service_group import LocalSpec as LocalSpec
from purelb.model._service_group import NetboxSpec as NetboxSpec
from purelb.model._service_group import PoolType as PoolType
from purelb.model._service_group import RejectedGroup as RejectedGroup
from purelb.model._service_group import SecretKeyRef as SecretKeyRef
from purelb.model._service_group import ServiceGroup as ServiceGroup
from purelb.model._service_group import parse_service_group as parse_service_group
from purelb.model._service_group import validate_service_groups as validate_service_groups

__all__ = [
    "FAMILY_BITS",
    "AddressPool",
    "AddressRange",
    "GroupSet",
    "IPAddress",
    "IPFamilyPolicy",
    "IPNetwork",
    "InvalidField",
    "LocalSpec",
    "NetboxSpec",
    "PoolType",
    "Reason",
    "RejectedGroup",
    "SecretKeyRef",
    "Service",
    "ServiceGroup",
    "ServiceKey",
    "ServicePort",
    "address_from_int",
    "annotations",
    "family_name",
    "parse_address",
    "parse_addresses",
    "parse_cidr",
    "parse_range",
    "parse_service",
    "parse_service_group",
    "service_key",
    "validate_service_groups",
]
