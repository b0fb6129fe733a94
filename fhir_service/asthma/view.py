"""Gathering what the patient-readable plan shows, from the plan's FHIR resources."""
from __future__ import annotations

from typing import Callable

from ..sdc.items import ext_value
from . import terms
from .activities import _steps
from .render import Contact, Medicine, PlanView, Zone

Resolver = Callable[[str], "dict | None"]


def person_name(resource: dict | None) -> str | None:
    if not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Organization":
        return resource.get("name")
    for name in resource.get("name") or ():
        if name.get("text"):
            return name["text"]
        words = list(name.get("prefix") or []) + list(name.get("given") or []) + ([name["family"]] if name.get("family") else [])
        if words:
            return " ".join(words)
    return None


def _phone(resource: dict | None) -> str | None:
    for t in (resource or {}).get("telecom") or ():
        if t.get("system") == "phone" and t.get("value"):
            return t["value"]
    return None


def concept_text(concept: dict | None) -> str | None:
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return concept["text"]
    for c in concept.get("coding") or ():
        if c.get("display"):
            return c["display"]
    return None


def medicines(requests: list[dict]) -> list[Medicine]:
    out = []
    for mr in requests:
        name = concept_text(mr.get("medicationCodeableConcept")) or (mr.get("medicationReference") or {}).get("display")
        role = ext_value(mr, terms.MEDICINE_ROLE_EXT)
        doses = [d["text"] for d in sorted(mr.get("dosageInstruction") or (), key=lambda d: d.get("sequence", 0))
                 if d.get("text")]
        out.append(Medicine(name or "Inhaler", (role or {}).get("display") if isinstance(role, dict) else None, doses))
    return out


def contacts(care_team: dict | None, resolve: Resolver) -> list[Contact]:
    out = []
    for p in (care_team or {}).get("participant") or ():
        role = concept_text((p.get("role") or [None])[0]) or ""
        member = p.get("member") or {}
        target = resolve(member["reference"]) if member.get("reference") else None
        name = person_name(target) or member.get("display") or member.get("reference")
        if name:
            out.append(Contact(role, name, _phone(target)))
    return out


def zones(request_group: dict) -> list[Zone]:
    out = []
    for action in request_group.get("action") or ():
        steps = [s.get("description") or s.get("title") for s in _steps(action)]
        out.append(Zone(action.get("title") or action.get("description") or "", [s for s in steps if s]))
    return out


def plan_view(plan: dict, request_group: dict, medicine_requests: list[dict], care_team: dict | None,
              patient: dict | None, triggers: list[dict], resolve: Resolver) -> PlanView:
    plan_type = ext_value(plan, terms.PLAN_TYPE_EXT)
    best = None
    thresholds = next((e for e in plan.get("extension") or () if e.get("url") == terms.THRESHOLDS_EXT), None)
    best_quantity = ext_value(thresholds, "personalBest") if thresholds else None
    if isinstance(best_quantity, dict) and best_quantity.get("value") is not None:
        best = f"{best_quantity['value']} {best_quantity.get('unit') or best_quantity.get('code') or ''}".strip()
    return PlanView(
        title=plan.get("title") or "Asthma action plan",
        patient=person_name(patient),
        plan_type=(plan_type or {}).get("display") if isinstance(plan_type, dict) else None,
        written=(plan.get("created") or (plan.get("period") or {}).get("start")),
        review_by=(plan.get("period") or {}).get("end"),
        medicines=medicines(medicine_requests),
        personal_best=best,
        zones=zones(request_group),
        triggers=[t.get("display") or t.get("code") for t in triggers if t.get("display") or t.get("code")],
        contacts=contacts(care_team, resolve),
    )

