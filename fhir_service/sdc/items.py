"""Small helpers over Questionnaire and QuestionnaireResponse trees: extensions, values, walks."""
from __future__ import annotations

from typing import Any, Iterator


def extensions(element: Any, url: str) -> list[dict]:
    if not isinstance(element, dict):
        return []
    return [e for e in element.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


def typed_value(obj: Any, prefix: str = "value") -> tuple[str | None, Any]:
    """(type suffix, value) of the first ``value[x]`` in ``obj``, e.g. ("Coding", {...})."""
    if isinstance(obj, dict):
        for key, val in obj.items():
            if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
                return key[len(prefix):], val
    return None, None


def ext_value(element: Any, url: str) -> Any:
    """The value[x] of the first extension with ``url`` (None when absent)."""
    for e in extensions(element, url):
        return typed_value(e)[1]
    return None


def sub_value(ext: dict, url: str) -> Any:
    """The value[x] of a complex extension's first sub-extension named ``url``."""
    return ext_value(ext, url)


def sub_values(ext: dict, url: str) -> list:
    return [typed_value(e)[1] for e in extensions(ext, url)]


def expression_text(value: Any) -> tuple[str | None, str | None, str | None]:
    """(expression, language, name) of an Expression value, or of a bare FHIRPath string."""
    if isinstance(value, str):
        return value, "text/fhirpath", None
    if isinstance(value, dict):
        return value.get("expression"), value.get("language"), value.get("name")
    return None, None, None


def walk(items: Any) -> Iterator[dict]:
    """Every item below ``items`` (depth first), including items nested under answers."""
    for it in items or ():
        if not isinstance(it, dict):
            continue
        yield it
        yield from walk(it.get("item"))
        for answer in it.get("answer") or ():
            if isinstance(answer, dict):
                yield from walk(answer.get("item"))


def matched(q_items: Any, r_items: Any) -> Iterator[tuple[dict, dict, list]]:
    """(questionnaire item, response item, the response item's children) one level down.

    The children include items nested under answers; response items the form does not
    have are skipped.
    """
    by_link = {q.get("linkId"): q for q in q_items or () if isinstance(q, dict)}
    for r in r_items or ():
        q = by_link.get(r.get("linkId")) if isinstance(r, dict) else None
        if q is not None:
            yield q, r, list(r.get("item") or []) + [i for a in r.get("answer") or () for i in a.get("item") or ()]


def by_link_id(questionnaire: dict) -> dict[str, dict]:
    return {it["linkId"]: it for it in walk(questionnaire.get("item")) if isinstance(it.get("linkId"), str)}


def answers(response: dict, link_id: str) -> list[Any]:
    """The answer values given anywhere in ``response`` for ``link_id``."""
    out = []
    for it in walk(response.get("item")):
        if it.get("linkId") == link_id:
            out.extend(typed_value(a)[1] for a in it.get("answer") or () if isinstance(a, dict))
    return [v for v in out if v is not None]


def first_answer(response: dict, link_id: str) -> Any:
    found = answers(response, link_id)
    return found[0] if found else None


def contained(resource: dict, ref: str) -> dict | None:
    """A contained resource by local reference ("#id")."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    for c in resource.get("contained") or ():
        if isinstance(c, dict) and c.get("id") == ref[1:]:
            return c
    return None
