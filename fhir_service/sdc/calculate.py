"""Form behaviour a filler applies: calculatedExpression values and enableWhen/enableWhenExpression.

$populate runs :func:`recalculate` so that scores and thresholds derived from populated
answers are filled in; clients can use it (and :func:`prune_disabled`) after answering.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterator

from . import urls
from .expressions import ExpressionError, Scope, as_focus, evaluate_json
from .items import answers, expression_text, ext_value, matched, typed_value
from .response import answer_for, compact

MAX_PASSES = 5  # calculations may feed each other; a few passes settle them


def _pairs(q_items: list, r_items: list) -> Iterator[tuple[dict, dict]]:
    """(questionnaire item, response item) for every response item, depth first."""
    for q, r, children in matched(q_items, r_items):
        yield q, r
        yield from _pairs(q.get("item") or [], children)


def _skeleton(q_items: list, r_items: list) -> list:
    """Response items for every non-display question, keeping existing ones (and repeats)."""
    out = []
    for q in q_items or ():
        if q.get("type") == "display":
            continue
        existing = [r for r in r_items or () if r.get("linkId") == q.get("linkId")]
        for r in existing or [{"linkId": q["linkId"], **({"text": q["text"]} if q.get("text") else {})}]:
            if q.get("item"):
                r["item"] = _skeleton(q["item"], r.get("item") or [])
            out.append(r)
    return out


def recalculate(questionnaire: dict, response: dict, scope: Scope) -> list[tuple[str, ExpressionError]]:
    """Set every calculatedExpression answer from the current answers; returns failures by linkId."""
    response["item"] = _skeleton(questionnaire.get("item") or [], response.get("item") or [])
    failures: dict[str, ExpressionError] = {}
    scope = scope.bind(resource=response, questionnaire=questionnaire)
    try:
        for _ in range(MAX_PASSES):
            changed = False
            for q, r in _pairs(questionnaire.get("item") or [], response["item"]):
                expr = ext_value(q, urls.CALCULATED_EXPRESSION)
                if expr is None:
                    continue
                text = expression_text(expr)[0]
                try:
                    values = evaluate_json(text, as_focus(r, "QuestionnaireResponse.item"), scope.bind(context=r))
                    failures.pop(q["linkId"], None)
                except ExpressionError as exc:
                    failures[q["linkId"]] = exc
                    continue
                new = [a for a in (answer_for(q, v) for v in values) if a is not None]
                if not q.get("repeats"):
                    new = new[:1]
                if new != (r.get("answer") or []):
                    changed = True
                    if new:
                        r["answer"] = new
                    else:
                        r.pop("answer", None)
            if not changed:
                break
    finally:
        compact(response)
    return list(failures.items())


# -- enableWhen -----------------------------------------------------------------------------
def _compare(op: str, actual: Any, wanted: Any) -> bool | None:
    if isinstance(actual, dict) and isinstance(wanted, dict):
        if op not in ("=", "!="):
            return None
        same = (actual.get("code") == wanted.get("code") and
                (wanted.get("system") is None or actual.get("system") == wanted.get("system")))
        return same if op == "=" else not same
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return (actual == wanted) if op == "=" else (actual != wanted) if op == "!=" else None
    try:
        a, w = (Decimal(str(actual)), Decimal(str(wanted))) if not isinstance(actual, str) else (actual, wanted)
    except ArithmeticError:
        return None
    return {"=": a == w, "!=": a != w, ">": a > w, "<": a < w, ">=": a >= w, "<=": a <= w}.get(op)


def _when(condition: dict, response: dict) -> bool | None:
    """One enableWhen; None when its question is unanswered (so it cannot be decided yet)."""
    given = answers(response, condition.get("question"))
    op = condition.get("operator")
    _, wanted = typed_value(condition, "answer")
    if op == "exists":
        return bool(given) == bool(wanted)
    if not given:
        return None
    results = [_compare(op, g, wanted) for g in given]
    if op == "!=":
        return all(r is True for r in results)
    return any(r is True for r in results)


def enabled(item: dict, response: dict, scope: Scope) -> bool | None:
    """Whether an item is enabled; None when that depends on questions not answered yet."""
    expr = ext_value(item, urls.ENABLE_WHEN_EXPRESSION)
    if expr is not None:
        try:
            values = evaluate_json(expression_text(expr)[0], response, scope.bind(resource=response))
        except ExpressionError:
            return None  # cannot tell: keep the item, the validator will report the expression
        return values[0] if values and isinstance(values[0], bool) else None
    conditions = item.get("enableWhen") or []
    if not conditions:
        return True
    results = [_when(c, response) for c in conditions]
    if item.get("enableBehavior") == "all":
        return False if False in results else None if None in results else True
    return True if True in results else None if None in results else False


def prune_disabled(questionnaire: dict, response: dict, scope: Scope, *, undecided_enabled: bool = False) -> dict:
    """Remove items that are not enabled, as a form filler hides them.

    With ``undecided_enabled`` an item whose condition rests on unanswered questions is kept
    ($populate keeps what it found until the user answers the controlling question).
    """
    def walk(q_items: list, container: dict) -> None:
        by_link = {q.get("linkId"): q for q in q_items or ()}
        kept = []
        for r in container.get("item") or ():
            q = by_link.get(r.get("linkId"))
            state = enabled(q, response, scope) if q is not None else True
            if state is False or (state is None and not undecided_enabled):
                continue
            if q is not None:
                walk(q.get("item") or [], r)
            kept.append(r)
        if "item" in container:
            container["item"] = kept
    walk(questionnaire.get("item") or [], response)
    return compact(response)
