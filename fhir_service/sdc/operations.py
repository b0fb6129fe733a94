"""The SDC operations, registered with the server's operation registry.

- Questionnaire/$assemble, Questionnaire/$populate (type and instance level)
- QuestionnaireResponse/$extract (type level with the response in Parameters, and instance)
- PlanDefinition/$apply (R4; the asthma action-plan templates get a full draft plan)
"""
from __future__ import annotations

from typing import Any

from .. import jsonutil
from ..asthma import draft as asthma_draft
from ..asthma import plan as asthma_plan
from ..core.operations import Operation, OperationCall, register
from ..outcome import error, operation_outcome
from . import apply as plan_apply
from . import extract as extraction
from .assemble import assemble, assemble_if_modular
from .expressions import Scope
from .extraction import read_reference
from .populate import Population

SDC_OPS = "http://hl7.org/fhir/uv/sdc/OperationDefinition/"
PARAMETER = "Parameters.parameter.where(name='{}')"

if asthma_plan.complete not in extraction.COMPLETION_STEPS:
    extraction.COMPLETION_STEPS.append(asthma_plan.complete)


# -- parameters ------------------------------------------------------------------------------
def _parameters(parts: list[dict]) -> dict:
    return {"resourceType": "Parameters", "parameter": [p for p in parts if p]}


def _stored(call: OperationCall, res_type: str) -> dict:
    return jsonutil.loads(call.service.read(res_type, call.resource_id).content)


def _reference_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("reference")
    return value if isinstance(value, str) and value else None


def _resource_param(call: OperationCall, names: tuple[str, ...], res_type: str) -> dict | None:
    """A resource given inline, by canonical, or by reference, under any of ``names``."""
    for name in names:
        p = call.param(name)
        if p is None:
            continue
        if isinstance(p.get("resource"), dict):
            if p["resource"].get("resourceType") != res_type:
                raise error(400, "invalid", f"'{name}' must be a {res_type}", PARAMETER.format(name))
            return p["resource"]
        value = call.value(name)
        text = _reference_text(value)
        if text and text.startswith(res_type + "/"):
            found = read_reference(call.service, text)
        elif text:
            found = call.service.resolve_canonical(text)
        else:
            found = None
        if not found or found.get("resourceType") != res_type:
            raise error(404, "not-found", f"The {res_type} {text!r} is not known to this server", PARAMETER.format(name))
        return found
    return None


def _body_resource(call: OperationCall, name: str, res_type: str) -> dict | None:
    body = call.body
    if isinstance(body, dict) and body.get("resourceType") == res_type:
        return body
    return _resource_param(call, (name,), res_type)


def _subject(call: OperationCall, name: str = "subject") -> dict:
    ref = _reference_text(call.value(name))
    if not ref:
        raise error(400, "required", f"'{name}' is required (e.g. Patient/123)", PARAMETER.format(name))
    found = read_reference(call.service, ref)
    if not found:
        raise error(404, "not-found", f"The subject {ref!r} is not known to this server", PARAMETER.format(name))
    return found


def _launch_contexts(call: OperationCall) -> dict[str, dict]:
    """SDC ``context`` (name + content) parameters, as launch context name -> resource."""
    out = {}
    for i, p in enumerate(call.params("context") + call.params("launchContext")):
        parts = {part.get("name"): part for part in p.get("part") or ()}
        name_part, content = parts.get("name") or {}, parts.get("content") or {}
        name = next((v for k, v in name_part.items() if k.startswith("value")), None)
        if isinstance(name, dict):
            name = name.get("code")
        resource = content.get("resource") or read_reference(call.service, _reference_text(content.get("valueReference")))
        if not name or not isinstance(resource, dict):
            raise error(400, "invalid", "Each 'context' needs a name and a content (a resource or a reference to one "
                        "this server knows)", f"Parameters.parameter.where(name='context')[{i}]")
        out[name] = resource
    return out


def _assembled(call: OperationCall, q: dict) -> dict:
    return assemble_if_modular(q, call.service.resolve_canonical)


# -- handlers -------------------------------------------------------------------------------
def _assemble(call: OperationCall) -> tuple[int, dict]:
    q = _stored(call, "Questionnaire") if call.resource_id else _body_resource(call, "questionnaire", "Questionnaire")
    if q is None:
        raise error(400, "required", "$assemble needs a Questionnaire", PARAMETER.format("questionnaire"))
    assembled, warnings = assemble(q, call.service.resolve_canonical)
    outcome = {"name": "outcome", "resource": operation_outcome(warnings)} if warnings else None
    return 200, _parameters([{"name": "return", "resource": assembled}, outcome])


def _populate(call: OperationCall) -> tuple[int, dict]:
    if call.resource_id:
        q = _stored(call, "Questionnaire")
    else:
        q = _resource_param(call, ("questionnaire", "canonical", "url", "questionnaireRef"), "Questionnaire")
    if q is None:
        raise error(400, "required", "$populate needs a questionnaire", PARAMETER.format("questionnaire"))
    run = Population(call.service, _assembled(call, q), _subject(call), _launch_contexts(call), call.base_url)
    response = run.run()
    issues = {"name": "issues", "resource": operation_outcome(run.issues)} if run.issues else None
    return 200, _parameters([{"name": "response", "resource": response}, issues])


def _extract(call: OperationCall) -> tuple[int, dict]:
    if call.resource_id:
        response, stored = _stored(call, "QuestionnaireResponse"), True
    else:
        response = _body_resource(call, "questionnaire-response", "QuestionnaireResponse")
        if response is None:
            raise error(400, "required", "$extract needs the QuestionnaireResponse",
                        PARAMETER.format("questionnaire-response"))
        stored = _is_stored(call, response)
    questionnaire = _resource_param(call, ("questionnaire",), "Questionnaire")
    job = extraction.extract(call.service, response, questionnaire, call.base_url, stored=stored)
    issues = {"name": "issues", "resource": operation_outcome(job.issues)} if job.issues else None
    return 200, _parameters([{"name": "return", "resource": extraction.transaction(job)}, issues])


def _is_stored(call: OperationCall, response: dict) -> bool:
    """Whether this exact response is already on the server (then the bundle refers to it)."""
    if not response.get("id"):
        return False
    found = read_reference(call.service, f"QuestionnaireResponse/{response['id']}")
    strip = ("meta", "text")
    return bool(found) and {k: v for k, v in found.items() if k not in strip} == \
        {k: v for k, v in response.items() if k not in strip}


def _apply(call: OperationCall) -> tuple[int, dict]:
    pd = _stored(call, "PlanDefinition") if call.resource_id else _body_resource(call, "planDefinition", "PlanDefinition")
    if pd is None:
        raise error(400, "required", "$apply needs a PlanDefinition", PARAMETER.format("planDefinition"))
    subject = _subject(call)
    practitioner = None
    if call.value("practitioner") is not None:
        practitioner = _subject(call, "practitioner")
    if asthma_plan.plan_template_type(pd) is not None:
        return 200, asthma_draft.draft_plan(call.service, pd, subject, practitioner, call.base_url)
    subject_ref = f"{subject['resourceType']}/{subject['id']}"
    app = plan_apply.Application(pd, subject_ref, Scope(variables={"subject": [subject]},
                                                        code_system=call.service.definitions.code_system))
    author = {"reference": f"{practitioner['resourceType']}/{practitioner['id']}"} if practitioner else None
    return 200, plan_apply.draft_care_plan(pd, app.request_group(), subject_ref, author)


register(Operation("assemble", _assemble, frozenset({"type", "instance"}), frozenset({"Questionnaire"}),
                   get_allowed=True, definition=SDC_OPS + "Questionnaire-assemble",
                   documentation="Assemble a modular Questionnaire (subQuestionnaire)"))
register(Operation("populate", _populate, frozenset({"type", "instance"}), frozenset({"Questionnaire"}),
                   get_allowed=True, definition=SDC_OPS + "Questionnaire-populate",
                   documentation="Pre-fill a QuestionnaireResponse for a subject from this server's records"))
register(Operation("extract", _extract, frozenset({"type", "instance"}), frozenset({"QuestionnaireResponse"}),
                   get_allowed=True, definition=SDC_OPS + "QuestionnaireResponse-extract",
                   documentation="Turn a completed response into a transaction Bundle (nothing is stored)"))
register(Operation("apply", _apply, frozenset({"type", "instance"}), frozenset({"PlanDefinition"}),
                   get_allowed=True, definition="http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply",
                   documentation="Apply a PlanDefinition to a subject: a draft CarePlan (RequestGroup contained)"))
