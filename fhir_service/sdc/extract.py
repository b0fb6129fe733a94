"""QuestionnaireResponse/$extract: a completed response becomes a transaction Bundle.

Nothing is stored. The Bundle holds, in this order, the Observations (observation-based
extraction), the template-based resources, whatever the registered completion steps add (the
asthma action plan's activities, narrative, document and plan replacement), and one Provenance
whose targets are all the created resources and whose ``entity`` (role ``source``) is the
response. Entries refer to each other by ``urn:uuid`` fullUrls, so POSTing the Bundle to this
server stores everything in one transaction.
"""
from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone
from typing import Callable

from ..core.resource_utils import new_id
from ..outcome import error
from . import urls
from .assemble import assemble_if_modular
from .displays import add_displays
from .expressions import Scope
from .extract_observations import extract_observations
from .extract_templates import extract_templates
from .extraction import Extraction

EXTRACTABLE_STATUSES = ("completed", "amended")
URI_SYSTEM = "urn:ietf:rfc:3986"
_NO_IDENTIFIER = {"Provenance", "QuestionnaireResponse"}
COMPLETION_STEPS: list[Callable[[Extraction], None]] = []  # domain modules append theirs


def questionnaire_for(service, response: dict, given: dict | None) -> dict:
    """The Questionnaire to extract with (given, or the response's), assembled if modular."""
    q = given
    if q is None:
        canonical = response.get("questionnaire")
        if not isinstance(canonical, str) or not canonical:
            raise error(400, "required", "The response names no questionnaire and none was given",
                        "QuestionnaireResponse.questionnaire")
        q = service.resolve_canonical(canonical)
        if not q or q.get("resourceType") != "Questionnaire":
            raise error(404, "not-found", f"The Questionnaire {canonical} is not known to this server",
                        "QuestionnaireResponse.questionnaire")
    return assemble_if_modular(q, service.resolve_canonical)


def extract(service, response: dict, questionnaire: dict | None, base_url: str, *, stored: bool) -> Extraction:
    """Run every extraction step; ``stored`` says whether the response is already on the server."""
    status = response.get("status")
    if status not in EXTRACTABLE_STATUSES:
        raise error(422, "business-rule", f"Only a completed response can be extracted; this one is "
                    f"'{status}'. Complete the review first.", "QuestionnaireResponse.status")
    q = questionnaire_for(service, response, questionnaire)
    response = copy.deepcopy(response)
    entries_before: list[dict] = []
    if not response.get("id"):
        response["id"] = new_id()
    if not stored:  # the response travels with the bundle so everything can point at it
        entries_before.append({"fullUrl": f"{base_url}/QuestionnaireResponse/{response['id']}", "resource": response,
                               "request": {"method": "PUT", "url": f"QuestionnaireResponse/{response['id']}"}})
    job = new_job(service, q, response, base_url, entries_before)
    extract_observations(job)
    extract_templates(job)
    _identify(job)
    for step in COMPLETION_STEPS:
        step(job)
    _identify(job)
    _add_provenance(job)
    return job


def new_job(service, questionnaire: dict, response: dict, base_url: str, entries: list | None = None) -> Extraction:
    """An extraction of ``response`` (which has an id): coded answers get their displays first."""
    for_extraction = copy.deepcopy(response)
    add_displays(questionnaire, for_extraction, service.definitions)
    scope = Scope(questionnaire=questionnaire, code_system=service.definitions.code_system,
                  variables={"resource": for_extraction, "questionnaire": questionnaire})
    return Extraction(service, questionnaire, for_extraction, f"QuestionnaireResponse/{response['id']}", base_url,
                      scope, entries=list(entries or []))


def transaction(job: Extraction) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": job.entries}


def _identify(job: Extraction) -> None:
    """Give each created resource an identifier that is the same every time this response is
    extracted, and create it only if none has it yet: posting the bundle twice, or extracting
    again and posting, makes no duplicates."""
    counts: dict[str, int] = {}
    for entry in job.created():
        resource, request = entry["resource"], entry["request"]
        kind = resource["resourceType"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind in _NO_IDENTIFIER or request.get("ifNoneExist") or identifier_of(resource):
            continue
        value = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{job.response_ref}#{kind}-{counts[kind]}')}"
        resource.setdefault("identifier", []).append({"system": URI_SYSTEM, "value": value})
        request["ifNoneExist"] = f"identifier={URI_SYSTEM}|{value}"


def identifier_of(resource: dict) -> str | None:
    """The extraction identifier of a resource (None for resources from elsewhere)."""
    for ident in resource.get("identifier") or ():
        if ident.get("system") == URI_SYSTEM and str(ident.get("value", "")).startswith("urn:uuid:"):
            return ident["value"]
    return None


def _add_provenance(job: Extraction) -> None:
    targets = [{"reference": e["fullUrl"]} for e in job.created()]
    if not targets:
        return
    qr = job.response
    agent = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                  "code": "author"}]}}
    agent["who"] = qr["author"] if (qr.get("author") or {}).get("reference") else {"display": "QuestionnaireResponse/$extract"}
    provenance = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]},
        "agent": [agent],
        "entity": [{"role": urls.PROVENANCE_SOURCE, "what": {"reference": job.response_ref}}],
    }
    job.add(provenance, request={"method": "POST", "url": "Provenance", "ifNoneExist": f"entity={job.response_ref}"})
