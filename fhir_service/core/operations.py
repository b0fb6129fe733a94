"""Routing for FHIR operations ($name) at system, type and instance level.

Modules register their operations here; the HTTP layer looks them up by name, level and type
and hands over an :class:`OperationCall`. The CapabilityStatement lists what is registered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..outcome import error

if TYPE_CHECKING:
    from .service import FHIRService


@dataclass
class OperationCall:
    service: "FHIRService"
    name: str
    level: str  # system | type | instance
    resource_type: str | None
    resource_id: str | None
    parameters: dict  # a Parameters resource built from the body and/or the query string
    body: Any  # the parsed body as sent (a resource, a Parameters, or None)
    base_url: str
    method: str  # GET | POST

    def param(self, name: str) -> dict | None:
        for p in self.parameters.get("parameter", []):
            if p.get("name") == name:
                return p
        return None

    def params(self, name: str) -> list[dict]:
        return [p for p in self.parameters.get("parameter", []) if p.get("name") == name]

    def value(self, name: str) -> Any:
        p = self.param(name)
        if p is None:
            return None
        for k, v in p.items():
            if k.startswith("value"):
                return v
        return p.get("resource")


@dataclass
class Operation:
    name: str
    handler: Callable[[OperationCall], tuple[int, Any]]  # -> (HTTP status, response body)
    levels: frozenset[str]
    resource_types: frozenset[str] | None = None  # None: every type
    affects_state: bool = False
    definition: str = ""  # canonical URL of the OperationDefinition
    documentation: str = ""
    get_allowed: bool = field(default=False)


_REGISTRY: dict[str, list[Operation]] = {}


def register(op: Operation) -> Operation:
    # Registering again (e.g. a module imported twice) replaces the earlier entry.
    same = [o for o in _REGISTRY.get(op.name, []) if o.resource_types == op.resource_types and o.levels == op.levels]
    _REGISTRY[op.name] = [o for o in _REGISTRY.get(op.name, []) if o not in same] + [op]
    return op


def all_operations() -> list[Operation]:
    return [op for ops in _REGISTRY.values() for op in ops]


def find(name: str, level: str, resource_type: str | None, method: str) -> Operation:
    candidates = _REGISTRY.get(name, [])
    for op in candidates:
        if level in op.levels and (op.resource_types is None or resource_type in op.resource_types):
            if method == "GET" and (op.affects_state and not op.get_allowed):
                raise error(405, "not-supported", f"${name} changes state and must be invoked with POST")
            return op
    where = {"system": "at the system level", "type": f"on {resource_type}", "instance": f"on a {resource_type} instance"}[level]
    raise error(404 if not candidates else 400, "not-supported", f"Operation ${name} is not supported {where}")
