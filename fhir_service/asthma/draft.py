"""PlanDefinition/$apply for the action-plan templates: a draft plan from the patient's record.

The draft is made the same way a review makes the real plan, so the two agree: the review
form is populated for the patient (thresholds and contacts of the current plan, personal best,
medicines), the template's plan type is chosen, and the form's extraction templates and
:func:`plan.finish` build the CarePlan. The result is one draft CarePlan with its Goals,
CareTeam, MedicationRequests and the applied RequestGroup contained.
"""
from __future__ import annotations

import copy

from ..outcome import error
from ..sdc.apply import canonical_of
from ..sdc.assemble import assemble_if_modular
from ..sdc.calculate import recalculate
from ..sdc.extract_templates import extract_templates
from ..sdc.extract import new_job
from ..sdc.extraction import Extraction
from ..sdc.items import ext_value
from ..sdc.populate import Population
from ..sdc.response import set_answers
from . import terms
from .plan import finish

DRAFT_RESPONSE_ID = "draft"


def draft_plan(service, template: dict, patient: dict, practitioner: dict | None, base_url: str) -> dict:
    plan_type = ext_value(template, terms.PLAN_TYPE_EXT)
    review = service.resolve_canonical(terms.REVIEW_QUESTIONNAIRE)
    if not isinstance(plan_type, dict) or not review:
        raise error(422, "not-supported", "This PlanDefinition is not an asthma action-plan template this server "
                    "can apply", "PlanDefinition")
    q = assemble_if_modular(review, service.resolve_canonical)
    launch = {"user": practitioner} if practitioner else {}
    population = Population(service, q, patient, launch, base_url)
    response = population.run()
    try:
        set_answers(q, response, terms.PLAN_PROVIDE_ITEM, [True])
        set_answers(q, response, terms.PLAN_TYPE_ITEM, [plan_type])
    except ValueError as exc:
        raise error(422, "processing", f"The review form cannot take this plan type: {exc}", "PlanDefinition") from None
    recalculate(q, response, population.scope)  # with the form's variables (the plan templates in force)
    response.update(status="completed", id=DRAFT_RESPONSE_ID)
    job = new_job(service, q, response, base_url)
    extract_templates(job)
    entry = next(job.created("CarePlan"), None)
    if entry is None:
        raise error(422, "processing", "The review form made no action plan for this patient", "PlanDefinition")
    finished = finish(job, entry, template, draft=True)
    return _contained_draft(job, entry, template, finished.request_group)


def _contained_draft(job: Extraction, entry: dict, template: dict, request_group: dict) -> dict:
    """The plan with the resources made alongside it contained, and references made local."""
    plan = entry["resource"]
    local = {entry["fullUrl"]: "#"}
    contained = []
    counts: dict[str, int] = {}
    for e in job.entries:
        if e is entry or e["resource"]["resourceType"] not in ("Goal", "CareTeam", "MedicationRequest"):
            continue
        kind = e["resource"]["resourceType"]
        counts[kind] = counts.get(kind, 0) + 1
        res = dict(e["resource"], id=f"{kind.lower()}-{counts[kind]}")
        local[e["fullUrl"]] = "#" + res["id"]
        contained.append(res)
    rg = dict(copy.deepcopy(request_group), id="request-group")
    draft = _localise(dict(plan), local)
    draft["contained"] = [_localise(r, local) for r in contained] + [rg]
    draft["status"] = "draft"
    draft["instantiatesCanonical"] = [canonical_of(template)]
    draft.setdefault("supportingInfo", []).append({"reference": "#request-group"})
    draft["supportingInfo"] = [s for s in draft["supportingInfo"] if not s.get("reference", "").startswith("urn:")]
    return draft


def _localise(value, local: dict):
    if isinstance(value, dict):
        return {k: (local.get(v, v) if k == "reference" and isinstance(v, str) else _localise(v, local))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_localise(v, local) for v in value]
    return value
