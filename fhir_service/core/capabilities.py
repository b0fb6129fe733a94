"""The CapabilityStatement, generated from what this server actually does."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import FHIR_VERSION, __version__, search
from . import operations
from .resource_utils import now_instant

if TYPE_CHECKING:
    from .service import FHIRService

TYPE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type"]
SYSTEM_INTERACTIONS = ["transaction", "batch", "search-system", "history-system"]


def _operation_entries(levels: set[str], resource_type: str | None) -> list[dict]:
    out = []
    for op in operations.all_operations():
        if not (op.levels & levels):
            continue
        if resource_type is not None and op.resource_types is not None and resource_type not in op.resource_types:
            continue
        entry = {"name": op.name, "definition": op.definition or f"urn:imp2art:operation:{op.name}"}
        if op.documentation:
            entry["documentation"] = op.documentation
        out.append(entry)
    return out


_cache: dict[tuple, dict] = {}


def capability_statement(service: "FHIRService", base_url: str) -> dict:
    """Built once per base URL and set of definitions (it is large: every type's parameters)."""
    service.sync_conformance()
    key = (id(service), base_url, service.definitions.generation)
    if key not in _cache:
        _cache.clear()
        _cache[key] = _build(service, base_url)
    return _cache[key]


def _build(service: "FHIRService", base_url: str) -> dict:
    defs = service.definitions
    resources = []
    for rtype in defs.resource_types:
        entry = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": ["*"],
            "searchRevInclude": ["*"],
            "searchParam": search.capability_search_params(defs, rtype),
        }
        supported = [sd["url"] for sd in defs.iter_type("StructureDefinition")
                     if sd.get("type") == rtype and sd.get("derivation") == "constraint"
                     and sd.get("url", "").startswith("https://fhir.imp2art.org/")]
        if supported:
            entry["supportedProfile"] = supported
        ops = _operation_entries({"type", "instance"}, rtype)
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now_instant()[:10],
        "kind": "instance",
        "software": {"name": "IMP²ART FHIR service", "version": __version__},
        "implementation": {"description": "FHIR R4 service for asthma supported self-management", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
            "searchParam": search.capability_search_params(defs, None),
            "operation": _operation_entries({"system"}, None),
        }],
    }
