"""Replacing a patient's active action plan in the same transaction as the new one.

The new plan names every plan it supersedes in ``replaces``; each superseded plan becomes
``revoked``, its zone Goals ``cancelled`` and its plan medicines ``stopped``. The changes are
FHIRPath Patch entries that touch nothing but the status, so an edit someone else made in the
meantime is kept, and posting the same bundle again changes nothing.
"""
from __future__ import annotations

from ..sdc.extract import identifier_of
from ..sdc.extraction import Extraction

_OPEN_GOAL = {"proposed", "planned", "accepted", "active", "on-hold"}
_OPEN_REQUEST = {"active", "on-hold", "draft"}


def _patch(path: str, value: str) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": path},
        {"name": "value", "valueCode": value}]}]}


def _entry(job: Extraction, resource: dict, path: str, value: str) -> dict:
    rtype, rid = resource["resourceType"], resource["id"]
    return {"fullUrl": f"{job.base_url}/{rtype}/{rid}", "resource": _patch(path, value),
            "request": {"method": "PATCH", "url": f"{rtype}/{rid}"}}


def active_plans(job: Extraction, plan: dict) -> list[dict]:
    """The subject's active plans of the same category as ``plan`` (as stored now)."""
    subject = (plan.get("subject") or {}).get("reference")
    coding = next((c for cc in plan.get("category") or () for c in cc.get("coding") or ()), None)
    if not subject or not coding:
        return []
    params = [("subject", subject), ("status", "active"), ("category", f"{coding.get('system', '')}|{coding['code']}")]
    bundle = job.service.search("CarePlan", params, job.base_url)
    return [e["resource"] for e in bundle.get("entry") or ()
            if (e.get("search") or {}).get("mode", "match") == "match" and e.get("resource")]


def supersede(job: Extraction, plan: dict) -> list[str]:
    """Add the entries that retire the active plans ``plan`` replaces; returns their references."""
    mine = identifier_of(plan)  # extracting the same review again must not retire its own plan
    old_plans = {f"CarePlan/{p['id']}": p for p in active_plans(job, plan) if not mine or identifier_of(p) != mine}
    for ref in [r.get("reference") for r in plan.get("replaces") or ()]:
        if ref and ref not in old_plans:
            found = job.read(ref)
            if found and found.get("status") == "active":
                old_plans[ref] = found
    replaces = plan.setdefault("replaces", [])
    for ref, old in old_plans.items():
        if not any(r.get("reference") == ref for r in replaces):
            replaces.append({"reference": ref})
        job.entries.append(_entry(job, old, "CarePlan.status", "revoked"))
        for goal_ref in [g.get("reference") for g in old.get("goal") or ()]:
            goal = job.read(goal_ref) if goal_ref else None
            if goal and goal.get("lifecycleStatus") in _OPEN_GOAL:
                job.entries.append(_entry(job, goal, "Goal.lifecycleStatus", "cancelled"))
        for activity in old.get("activity") or ():
            ref = (activity.get("reference") or {}).get("reference", "")
            request = job.read(ref) if ref.startswith("MedicationRequest/") else None
            if request and request.get("intent") == "plan" and request.get("status") in _OPEN_REQUEST:
                job.entries.append(_entry(job, request, "MedicationRequest.status", "stopped"))
    if not replaces:
        plan.pop("replaces")
    return list(old_plans)
