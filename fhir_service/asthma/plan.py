"""Finishing the action plan that template extraction started.

The review's templates give the CarePlan, CareTeam, zone Goals and plan MedicationRequests
(and the profiles they claim, in the templates' ``meta.profile``).
This step applies the plan's PlanDefinition to the review's numbers and adds, in the bundle:
- the zone activities (wording from the template, thresholds in the patient's L/min);
- the triggers as supporting information;
- the retirement of the plan(s) it replaces;
- the patient-readable plan as the CarePlan narrative and as a DocumentReference (HTML).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from ..outcome import error
from ..terminology.service import Terminology
from ..sdc.apply import Application
from ..sdc.displays import display_for
from ..sdc.expressions import Scope
from ..sdc.extraction import Extraction
from ..sdc.items import by_link_id, ext_value
from . import activities, plan_inputs, replace, terms
from .render import narrative, page
from .view import plan_view


@dataclass
class Finished:
    request_group: dict
    html: str


def complete(job: Extraction) -> None:
    """$extract completion step: every asthma action plan in the bundle is finished."""
    for entry in list(job.created("CarePlan")):
        template = plan_template(job.service, entry["resource"])
        if template is not None:
            finish(job, entry, template, draft=False)


def plan_template(service, plan: dict) -> dict | None:
    """The action-plan PlanDefinition a CarePlan instantiates (None for other CarePlans)."""
    if ext_value(plan, terms.PLAN_TYPE_EXT) is None:
        return None
    for canonical in plan.get("instantiatesCanonical") or ():
        pd = service.resolve_canonical(canonical)
        if pd and pd.get("resourceType") == "PlanDefinition":
            return pd
    raise error(422, "not-found", f"The action plan's template {plan.get('instantiatesCanonical')} is not known to "
                "this server", "CarePlan.instantiatesCanonical")


def plan_template_type(plan_definition: dict) -> dict | None:
    """The plan type of an action-plan template (None for other PlanDefinitions)."""
    value = ext_value(plan_definition, terms.PLAN_TYPE_EXT)
    return value if isinstance(value, dict) else None


def code_display(service):
    """Display text for a Coding from the CodeSystems the server holds (zones, roles)."""
    terminology = Terminology.for_definitions(service.definitions)
    return lambda coding: display_for(coding, None, terminology)


def finish(job: Extraction, entry: dict, template: dict, *, draft: bool) -> Finished:
    plan, plan_ref = entry["resource"], entry["fullUrl"]
    inputs = plan_inputs.from_response(job.response)
    subject_ref = (plan.get("subject") or {}).get("reference", "")
    patient = job.read(subject_ref)
    app = Application(template, subject_ref, Scope(variables={**inputs.variables(), "subject": [patient] if patient else []},
                                                   code_system=job.service.definitions.code_system))
    request_group = app.request_group()
    job.issues.extend(app.issues)

    meds = [(e["fullUrl"], e["resource"]) for e in job.created("MedicationRequest")
            if any(b.get("reference") == plan_ref for b in e["resource"].get("basedOn") or ())]
    goal_refs = {g.get("reference") for g in plan.get("goal") or ()}
    goals = {}
    for e in job.created("Goal"):
        if e["fullUrl"] in goal_refs:
            zone = ext_value(e["resource"], terms.ZONE_EXT) or {}
            goals[zone.get("code")] = e["fullUrl"]
    plan["activity"] = activities.build(request_group, meds, goals, code_display(job.service))
    _support_with_triggers(job, plan)
    if not draft:
        replace.supersede(job, plan)

    care_team = next((e["resource"] for e in job.created("CareTeam")
                      if any(c.get("reference") == e["fullUrl"] for c in plan.get("careTeam") or ())), None)
    view = plan_view(plan, request_group, [m for _, m in meds], care_team, patient, inputs.triggers, job.read)
    div = narrative(view)
    plan["text"] = {"status": "generated", "div": div}
    html = page(view, div)
    if not draft:
        job.add(document_reference(plan, plan_ref, html))
    return Finished(request_group, html)


def _support_with_triggers(job: Extraction, plan: dict) -> None:
    """The Observations extracted for the triggers item become the plan's supportingInfo."""
    item = by_link_id(job.questionnaire).get(terms.TRIGGERS_ITEM)
    codes = {(c.get("system"), c.get("code")) for c in (item or {}).get("code") or ()}
    if not codes:
        return
    support = plan.setdefault("supportingInfo", [])
    for e in job.created("Observation"):
        coded = {(c.get("system"), c.get("code")) for c in (e["resource"].get("code") or {}).get("coding") or ()}
        if coded & codes:
            support.append({"reference": e["fullUrl"]})
    if not support:
        plan.pop("supportingInfo")


def document_reference(plan: dict, plan_ref: str, html: str) -> dict:
    """The patient-readable plan as a document (type: the plan's own category, LOINC 69981-9)."""
    created = plan.get("created") or ""
    doc: dict = {"resourceType": "DocumentReference", "status": "current", "docStatus": "final"}
    if plan.get("category"):
        doc["type"] = plan["category"][0]
    doc["subject"] = plan["subject"]
    if "T" in created:
        doc["date"] = created
    if plan.get("author"):
        doc["author"] = [plan["author"]]
    doc["description"] = plan.get("title") or "Asthma action plan"
    attachment = {"contentType": "text/html", "language": "en-GB",
                  "data": base64.b64encode(html.encode("utf-8")).decode("ascii"), "title": doc["description"]}
    if created:
        attachment["creation"] = created
    doc["content"] = [{"attachment": attachment}]
    doc["context"] = {"related": [{"reference": plan_ref}]}
    if plan.get("period"):
        doc["context"]["period"] = plan["period"]
    return doc
