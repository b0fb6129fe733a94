"""Observation-based extraction (SDC extraction.html#obs-extract).

An item with a ``code`` and ``observationExtract`` (on itself, an ancestor or the root; ``false``
switches it off for the item and its descendants) becomes an Observation per answer. A coded
group becomes a panel Observation; its coded children become ``component``s or separate
Observations linked by ``hasMember`` as the child's observationExtract code says (``member``
when it does not say). Unanswered items produce nothing.
"""
from __future__ import annotations

from typing import Any

from . import urls
from .extraction import Extraction, new_full_url
from .items import extensions, ext_value, matched, typed_value

_PERFORMER_TYPES = {"Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient", "RelatedPerson"}


def extract_observations(job: Extraction) -> None:
    q = job.questionnaire
    root = _Flags(_marking(q)[0], ext_value(q, urls.OBSERVATION_EXTRACT_CATEGORY), None)
    _walk(job, q.get("item") or [], job.response.get("item") or [], root, None)


class _Flags:
    """What an item inherits: extract or not, the category, and the relationship to a panel."""

    def __init__(self, extract: bool | None, category: Any, relationship: str | None):
        self.extract, self.category, self.relationship = extract, category, relationship


def _marking(element: dict) -> tuple[bool | None, str | None]:
    """(extract?, relationship to the parent panel) from observationExtract: a boolean, or a
    relationship code (component | member | derived | independent), which also means extract."""
    for ext in extensions(element, urls.OBSERVATION_EXTRACT):
        kind, value = typed_value(ext)
        if kind == "Boolean":
            return value, None
        if kind == "Code":
            return True, value
    return None, None


def _walk(job: Extraction, q_items: list, r_items: list, inherited: _Flags, panel: dict | None) -> None:
    for q, r, children in matched(q_items, r_items):
        own, relationship = _marking(q)
        if own is False:
            continue  # false excludes the item and everything below it
        flags = _Flags(own if own is not None else inherited.extract,
                       ext_value(q, urls.OBSERVATION_EXTRACT_CATEGORY) or inherited.category, relationship)
        if not (flags.extract and q.get("code")):
            _walk(job, q.get("item") or [], children, flags, None)
            continue
        if q.get("type") == "group":
            _panel(job, q, children, flags, panel)
            continue
        for answer in r.get("answer") or ():
            _answer(job, q, answer, flags, panel)
        if children:
            _walk(job, q.get("item") or [], children, flags, None)


def _panel(job: Extraction, q: dict, children: list, flags: _Flags, parent: dict | None) -> None:
    obs = _observation(job, q, flags)
    entry = {"fullUrl": new_full_url(), "resource": obs, "request": {"method": "POST", "url": "Observation"}}
    at = len(job.entries)
    _walk(job, q.get("item") or [], children, flags, entry)
    if obs.get("component") or obs.get("hasMember"):
        job.entries.insert(at, entry)  # the panel goes before its members
        _link(parent, entry, flags.relationship)


def _answer(job: Extraction, q: dict, answer: dict, flags: _Flags, panel: dict | None) -> None:
    value = _value(q, answer)
    if value is None:
        job.note("warning", "not-supported", f"The answer to '{q['linkId']}' cannot be an Observation value; "
                 "it was not extracted", f"QuestionnaireResponse.item.where(linkId='{q['linkId']}')")
        return
    relationship = flags.relationship or ("member" if panel else None)
    if panel is not None and relationship == "component":
        panel["resource"].setdefault("component", []).append({"code": {"coding": list(q["code"])}, **value})
        return
    obs = _observation(job, q, flags)
    obs.update(value)
    entry = job.add(obs)
    _link(panel, entry, relationship)


def _link(panel: dict | None, entry: dict, relationship: str | None) -> None:
    if panel is None:
        return
    ref = {"reference": entry["fullUrl"]}
    if relationship == "derived":
        entry["resource"].setdefault("derivedFrom", []).append({"reference": panel["fullUrl"]})
    elif relationship in (None, "member"):
        panel["resource"].setdefault("hasMember", []).append(ref)


def _observation(job: Extraction, q: dict, flags: _Flags) -> dict:
    qr = job.response
    obs: dict = {"resourceType": "Observation"}
    if qr.get("basedOn"):
        obs["basedOn"] = qr["basedOn"]
    obs["status"] = "final"
    if isinstance(flags.category, dict):
        obs["category"] = [flags.category]
    obs["code"] = {"coding": list(q["code"])}
    if qr.get("subject"):
        obs["subject"] = qr["subject"]
    encounter = (qr.get("encounter") or {}).get("reference", "")
    if encounter.startswith("Encounter/") or encounter.startswith("urn:"):
        obs["encounter"] = qr["encounter"]
    authored = qr.get("authored")
    if isinstance(authored, str):
        obs["effectiveDateTime"] = authored
        if "T" in authored:
            obs["issued"] = authored
    author = (qr.get("author") or {}).get("reference", "")
    if author.split("/")[0] in _PERFORMER_TYPES:
        obs["performer"] = [qr["author"]]
    obs["derivedFrom"] = [{"reference": job.response_ref}]
    return obs


def _value(q: dict, answer: dict) -> dict | None:
    """An answer as Observation.value[x]; numbers with a questionnaire-unit become Quantities."""
    kind, value = typed_value(answer)
    unit = ext_value(q, urls.QUESTIONNAIRE_UNIT)
    if kind in ("Integer", "Decimal") and isinstance(unit, dict):
        return {"valueQuantity": {"value": value, "unit": unit.get("display") or unit.get("code"),
                                  "system": unit.get("system"), "code": unit.get("code")}}
    if kind == "Decimal":
        return {"valueQuantity": {"value": value}}
    if kind == "Coding":
        return {"valueCodeableConcept": {"coding": [value]}}
    if kind == "Date":
        return {"valueDateTime": value}
    if kind in ("Integer", "Boolean", "String", "DateTime", "Time", "Quantity"):
        return {"value" + kind: value}
    return None
