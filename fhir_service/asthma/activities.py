"""CarePlan activities from an applied plan template (a RequestGroup), tagged with their zone.

R4 CarePlan.activity.detail has no condition, so each top-level template action is a zone
(its code is the zone) and each of its steps becomes one activity tagged with that zone.
Steps coded with a medicine role apply to the plan's MedicationRequests with that role. The
plan's medicines themselves are listed as everyday-zone activities.
"""
from __future__ import annotations

from typing import Callable, Iterator

from ..sdc.items import ext_value
from . import terms


def _steps(action: dict) -> Iterator[dict]:
    children = action.get("action") or []
    if not children:
        yield action
    for child in children:
        yield from _steps(child)


def _codings(action: dict) -> list[dict]:
    return [c for cc in action.get("code") or () for c in cc.get("coding") or () if isinstance(c, dict)]


def _same(a: dict, b: dict) -> bool:
    return a.get("system") == b.get("system") and a.get("code") == b.get("code")


def zone_of(action: dict) -> dict | None:
    codings = _codings(action)
    return codings[0] if codings else None


def build(request_group: dict, medicines: list[tuple[str, dict]], goals: dict[str, str],
          display: Callable[[dict], str | None]) -> list[dict]:
    """``medicines``: (reference, MedicationRequest); ``goals``: zone code -> Goal reference."""
    zones = [(zone_of(a), a) for a in request_group.get("action") or ()]
    zones = [(z, a) for z, a in zones if z]
    out = []

    def tag(zone: dict) -> list[dict]:
        coding = {k: zone[k] for k in ("system", "code") if k in zone}
        shown = display(coding)
        if shown:
            coding["display"] = shown
        return [{"url": terms.ZONE_EXT, "valueCoding": coding}]

    everyday = next((z for z, _ in zones if z.get("code") == terms.EVERYDAY_ZONE), None)
    if everyday:
        out += [{"extension": tag(everyday), "reference": {"reference": ref}} for ref, _ in medicines]
    for zone, action in zones:
        status = "in-progress" if zone.get("code") == terms.EVERYDAY_ZONE else "not-started"
        goal = goals.get(zone.get("code"))
        for step in _steps(action):
            text = step.get("description") or step.get("title")
            if not text:
                continue
            detail: dict = {}
            if goal:
                detail["goal"] = [{"reference": goal}]
            detail["status"] = status
            detail["description"] = text
            roles = _codings(step)
            meds = [m for _, m in medicines if any(_same(ext_value(m, terms.MEDICINE_ROLE_EXT) or {}, r) for r in roles)]
            for med in meds or [None]:
                item = dict(detail)
                if med is not None and med.get("medicationCodeableConcept"):
                    item = {"kind": "MedicationRequest", **item, "productCodeableConcept": med["medicationCodeableConcept"]}
                out.append({"extension": tag(zone), "detail": item})
    return out
