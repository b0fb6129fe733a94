"""Displays for coded answers that were sent without one.

Extracted resources are read by people (and the asthma plan is rendered for the patient), so
a Coding answer without a display gets the one the item's answerOption, its answerValueSet or
the CodeSystem gives. Only the copy used for extraction is changed, never the stored response.
"""
from __future__ import annotations

from ..terminology.service import Terminology
from .items import by_link_id, typed_value, walk


def display_for(coding: dict, item: dict | None, terminology: Terminology) -> str | None:
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(code, str):
        return None
    for option in (item or {}).get("answerOption") or ():
        kind, value = typed_value(option)
        if kind == "Coding" and value.get("code") == code and value.get("system") == system and value.get("display"):
            return value["display"]
    shown = _from_value_set(terminology.value_set((item or {}).get("answerValueSet")), system, code)
    if not shown:
        cs = terminology.code_system(system)
        shown = cs.displays(code) if cs is not None else []
    return shown[0] if shown else None


def _from_value_set(vs, system, code, depth: int = 0) -> list[str]:
    """Displays a ValueSet's compose gives the code, looking into the ValueSets it includes."""
    if vs is None or depth > 5:
        return []
    shown = vs.display_of(system, code)
    for inc in vs.includes:
        for sub in inc.value_sets:
            shown = shown or _from_value_set(sub, system, code, depth + 1)
    return shown


def add_displays(questionnaire: dict, response: dict, definitions) -> None:
    terminology = Terminology.for_definitions(definitions)
    items = by_link_id(questionnaire)
    for r in walk(response.get("item")):
        for answer in r.get("answer") or ():
            coding = answer.get("valueCoding")
            if isinstance(coding, dict) and not coding.get("display"):
                shown = display_for(coding, items.get(r.get("linkId")), terminology)
                if shown:
                    coding["display"] = shown
