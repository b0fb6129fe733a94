"""Building QuestionnaireResponse answers: typed answer values, and answers kept in form order.

Used by $populate, by the calculation pass, and by clients (tests) that fill in a response.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import urls
from .items import ext_value, typed_value

# Questionnaire item type -> QuestionnaireResponse answer value[x] suffix
ANSWER_TYPE = {
    "boolean": "Boolean", "decimal": "Decimal", "integer": "Integer", "date": "Date", "dateTime": "DateTime",
    "time": "Time", "string": "String", "text": "String", "url": "Uri", "choice": "Coding",
    "open-choice": "Coding", "attachment": "Attachment", "reference": "Reference", "quantity": "Quantity",
}


def answer_for(item: dict, value: Any) -> dict | None:
    """An ``answer`` object for ``item`` holding ``value``, converted to the item's type.

    None when the value cannot be expressed in that type: callers report it, never guess.
    """
    kind = item.get("type")
    if isinstance(value, dict) and "valueQuantity" not in value and _is_quantity(value) and kind in ("integer", "decimal"):
        value = value.get("value")
    if isinstance(value, dict) and kind in ("integer", "decimal", "boolean", "string", "text", "date", "dateTime"):
        # an Observation-style value[x] holder or a single-valued element
        inner_type, inner = typed_value(value)
        if inner_type is not None:
            return answer_for(item, inner)
    converted = _convert(kind, item, value)
    if converted is None:
        return None
    suffix = ANSWER_TYPE.get(kind)
    if kind == "open-choice" and isinstance(converted, str):
        suffix = "String"
    return {"value" + suffix: converted} if suffix else None


def _is_quantity(v: dict) -> bool:
    return "value" in v and any(k in v for k in ("unit", "code", "system"))


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    return None


def _convert(kind: str | None, item: dict, value: Any) -> Any:
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "integer":
        n = _number(value)
        return int(n) if n is not None and n == n.to_integral_value() else None
    if kind == "decimal":
        n = _number(value)
        return (int(n) if n == n.to_integral_value() else n) if n is not None else None
    if kind in ("string", "text"):
        return value if isinstance(value, str) else None
    if kind == "url":
        return value if isinstance(value, str) else None
    if kind == "date":
        return value[:10] if isinstance(value, str) and len(value) >= 4 else None
    if kind in ("dateTime", "time"):
        return value if isinstance(value, str) else None
    if kind in ("choice", "open-choice"):
        if isinstance(value, dict) and isinstance(value.get("coding"), list):  # CodeableConcept
            value = value["coding"][0] if value["coding"] else None
        if isinstance(value, dict) and ("code" in value or "system" in value):
            return {k: v for k, v in value.items() if k in ("system", "version", "code", "display")}
        if isinstance(value, str):
            return _option_for_code(item, value) or (value if kind == "open-choice" else None)
        return None
    if kind == "reference":
        if isinstance(value, dict) and ("reference" in value or "display" in value or "identifier" in value):
            return value
        if isinstance(value, dict) and value.get("resourceType") and value.get("id"):
            return {"reference": f"{value['resourceType']}/{value['id']}"}
        return {"reference": value} if isinstance(value, str) and "/" in value else None
    if kind == "quantity":
        if isinstance(value, dict) and _is_quantity(value):
            return value
        n = _number(value)
        unit = ext_value(item, urls.QUESTIONNAIRE_UNIT)
        if n is not None and isinstance(unit, dict):
            return {"value": n, "unit": unit.get("display") or unit.get("code"), "system": unit.get("system"),
                    "code": unit.get("code")}
        return None
    if kind == "attachment":
        return value if isinstance(value, dict) else None
    return None


def _option_for_code(item: dict, code: str) -> dict | None:
    for opt in item.get("answerOption") or ():
        kind, val = typed_value(opt)
        if kind == "Coding" and isinstance(val, dict) and val.get("code") == code:
            return val
    return None


# -- answers in form order ------------------------------------------------------------------
def _chain(items: list, link_id: str) -> list[dict] | None:
    """The Questionnaire items from the top down to ``link_id``."""
    for it in items or ():
        if it.get("linkId") == link_id:
            return [it]
        below = _chain(it.get("item") or [], link_id)
        if below:
            return [it] + below
    return None


def _slot(container: dict, siblings: list, q_item: dict) -> dict:
    """The (first) response item for ``q_item`` under ``container``, made in form order if absent."""
    items = container.setdefault("item", [])
    for it in items:
        if it.get("linkId") == q_item["linkId"]:
            return it
    order = [s.get("linkId") for s in siblings]
    rank = order.index(q_item["linkId"])
    made = {"linkId": q_item["linkId"]}
    if q_item.get("text"):
        made["text"] = q_item["text"]
    at = next((i for i, it in enumerate(items) if it.get("linkId") in order and order.index(it["linkId"]) > rank),
              len(items))
    items.insert(at, made)
    return made


def _container(questionnaire: dict, response: dict, link_id: str) -> tuple[dict, list[dict], dict]:
    """(response element holding ``link_id``'s items, its questionnaire siblings, the item)."""
    chain = _chain(questionnaire.get("item") or [], link_id)
    if not chain:
        raise ValueError(f"linkId {link_id!r} is not in the Questionnaire")
    container, siblings = response, questionnaire.get("item") or []
    for q_item in chain[:-1]:
        container = _slot(container, siblings, q_item)
        siblings = q_item.get("item") or []
    return container, siblings, chain[-1]


def _answers(q_item: dict, values: list) -> list[dict]:
    out = []
    for v in values:
        a = answer_for(q_item, v)
        if a is None:
            raise ValueError(f"{v!r} is not a valid answer to {q_item['linkId']!r} ({q_item.get('type')})")
        out.append(a)
    return out


def set_answers(questionnaire: dict, response: dict, link_id: str, values: list) -> dict:
    """Set the answers to ``link_id`` (in the first instance of each enclosing group).

    ``values`` are plain values converted to the item's type; an empty list removes the answers.
    Returns the response item. Raises ValueError for an unknown linkId or an unconvertible value.
    """
    container, siblings, target = _container(questionnaire, response, link_id)
    item = _slot(container, siblings, target)
    answers = _answers(target, values)
    if answers:
        item["answer"] = answers
    else:
        item.pop("answer", None)
    compact(response)
    return item


def set_repeats(questionnaire: dict, response: dict, link_id: str, repeats: list[dict[str, list]]) -> None:
    """Replace every repetition of the repeating group ``link_id``: one per {child linkId: values}."""
    container, siblings, group = _container(questionnaire, response, link_id)
    anchor = _slot(container, siblings, group)  # marks the place in form order
    made = []
    for answers_by_link in repeats:
        repetition = {"linkId": link_id, **({"text": group["text"]} if group.get("text") else {}), "item": []}
        for child in group.get("item") or ():
            values = answers_by_link.get(child["linkId"])
            if values:
                repetition["item"].append({"linkId": child["linkId"], **({"text": child["text"]} if child.get("text") else {}),
                                           "answer": _answers(child, values)})
        made.append(repetition)
    items = container["item"]
    at = items.index(anchor)
    container["item"] = [it for it in items[:at] if it.get("linkId") != link_id] + made + \
        [it for it in items[at:] if it.get("linkId") != link_id]
    compact(response)


def compact(element: dict) -> dict:
    """Drop response items that carry neither answers nor items (recursively)."""
    kept = []
    for it in element.get("item") or ():
        compact(it)
        for a in it.get("answer") or ():
            compact(a)
            if "item" in a and not a["item"]:
                del a["item"]
        if it.get("answer") or it.get("item"):
            kept.append(it)
    if "item" in element:
        if kept:
            element["item"] = kept
        else:
            del element["item"]
    return element
