"""QuestionnaireResponse checked against its Questionnaire (resolved by canonical URL|version).

Follows the HL7 validator's rules and wording: linkIds and nesting, answer types, answerOption
and answerValueSet membership, enableWhen (required only applies to enabled items), repeats,
min/max values and lengths, regex, decimal places, attachments, quantity units, and the
Questionnaire's status.
"""
from __future__ import annotations

import base64
import binascii
import re
import threading
from datetime import date
from decimal import Decimal

from ..terminology import Terminology, ucum
from . import bindings

EXT = "http://hl7.org/fhir/StructureDefinition/"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"

# Item type -> answer value types the HL7 validator accepts (R4).
ANSWER_TYPES = {
    "boolean": ("boolean",), "decimal": ("decimal",), "integer": ("integer",), "date": ("date",),
    "dateTime": ("dateTime",), "time": ("time",), "string": ("string",), "text": ("string",), "url": ("uri",),
    "attachment": ("Attachment",), "reference": ("Reference",), "quantity": ("Quantity",),
    "choice": ("Coding", "date", "time", "integer", "string"),
    "open-choice": ("Coding", "date", "time", "integer", "string"),
}
NO_ANSWER_TYPES = ("group", "display", "question")


def _dicts(x) -> list:
    """The objects of a JSON array; anything malformed is the structural check's business."""
    return [e for e in x if isinstance(e, dict)] if isinstance(x, list) else []


def _lid(item: dict):
    lid = item.get("linkId")
    return lid if isinstance(lid, str) else None


_tl = threading.local()  # ext_index: id(item) -> (item, url -> extensions), for one check_response


def _ext(item: dict, name: str, prefix: str = EXT) -> list:
    exts = item.get("extension")
    if not exts:
        return []  # the common case, asked for several extensions per item
    url = prefix + name
    index = getattr(_tl, "ext_index", None)
    if index is None:
        return [e for e in _dicts(exts) if e.get("url") == url]
    # each item is asked for a dozen extensions: index its extensions by URL once
    hit = index.get(id(item))
    if hit is None or hit[0] is not item:
        by_url: dict = {}
        for e in _dicts(exts):
            u = e.get("url")
            if isinstance(u, str):
                by_url.setdefault(u, []).append(e)
        hit = index[id(item)] = (item, by_url)
    return hit[1].get(url, [])


def _ext_value(item: dict, name: str, prefix: str = EXT):
    for e in _ext(item, name, prefix):
        for k, v in e.items():
            if k.startswith("value"):
                return v
    return None


_COMPLEX = frozenset({"Coding", "Quantity", "Reference", "Attachment", "CodeableConcept", "Period", "Range"})


def _typed(obj: dict, prefix: str) -> tuple[str | None, object]:
    """The ``prefix[x]`` of an answer, option or enableWhen: (FHIR type, value)."""
    for k, v in obj.items():
        if k.startswith(prefix) and len(k) > len(prefix):
            t = k[len(prefix):]
            return (t if t in _COMPLEX else t[0].lower() + t[1:]), v
    return None, None


def _value(obj: dict) -> tuple[str | None, object]:
    return _typed(obj, "value")


def _answer_value(obj: dict) -> tuple[str | None, object]:
    return _typed(obj, "answer")


def _num(v):
    return Decimal(str(v)) if isinstance(v, (int, Decimal, float)) and not isinstance(v, bool) else None


class _Ctx:
    def __init__(self, w, q: dict, qr: dict):
        self.w = w
        self.q = q
        self.qr = qr
        self.completed = qr.get("status") in ("completed", "amended")
        self.incomplete = False
        self.term = Terminology.for_definitions(w.v.definitions)
        self.answers: dict[str, list] = {}
        self._index(qr.get("item"))
        self.all_links = set()
        self._links(q.get("item"))

    def _index(self, items) -> None:
        for it in _dicts(items):
            lid = _lid(it)
            for a in _dicts(it.get("answer")):
                self.answers.setdefault(lid, []).append(a)
                self._index(a.get("item"))
            self._index(it.get("item"))

    def _links(self, items) -> None:
        for it in _dicts(items):
            self.all_links.add(_lid(it))
            self._links(it.get("item"))


def resolve_questionnaire(w, qr: dict, ref: str) -> dict | None:
    if ref.startswith("#"):
        for c in qr.get("contained", ()) if isinstance(qr.get("contained"), list) else ():
            if isinstance(c, dict) and c.get("id") == ref[1:] and c.get("resourceType") == "Questionnaire":
                return c
        return None
    q = w.v.definitions.get(ref)
    if (q is None or q.get("resourceType") != "Questionnaire") and w.resolver is not None:
        try:
            q = w.resolver(ref)
        except Exception:
            q = None
    return q if isinstance(q, dict) and q.get("resourceType") == "Questionnaire" else None


SUB_QUESTIONNAIRE = SDC + "sdc-questionnaire-subQuestionnaire"


def _assembled_items(w, qr: dict, items, seen: frozenset) -> tuple[list, bool]:
    """Items with modular sub-questionnaires (SDC $assemble) inlined; False if one is missing."""
    out: list = []
    complete = True
    for it in _dicts(items):
        sub = _ext_value(it, "sdc-questionnaire-subQuestionnaire", SDC) if it.get("type") == "display" else None
        if isinstance(sub, str):
            child = resolve_questionnaire(w, qr, sub) if sub not in seen else None
            if child is None:
                complete = False
                continue
            inner, ok = _assembled_items(w, qr, child.get("item"), seen | {sub})
            out.extend(inner)
            complete = complete and ok
            continue
        if it.get("item"):
            inner, ok = _assembled_items(w, qr, it["item"], seen)
            complete = complete and ok
            if inner != it["item"]:
                it = dict(it, item=inner)
        out.append(it)
    return out, complete


def check_response(w, qr: dict, path: str) -> None:
    ref = qr.get("questionnaire")
    if not isinstance(ref, str):
        return
    q = resolve_questionnaire(w, qr, ref)
    if q is None:
        w.add("warning", "not-found", f"The questionnaire '{ref}' could not be resolved, so no validation can be "
              "performed against the base questionnaire", path + ".questionnaire")
        return
    _check_status(w, q, qr, path)
    saved = getattr(_tl, "ext_index", None)
    _tl.ext_index = {}
    try:
        items, complete = _assembled_items(w, qr, q.get("item"), frozenset({ref}))
        if items is not q.get("item"):
            q = dict(q, item=items)
        ctx = _Ctx(w, q, qr)
        ctx.incomplete = not complete
        _items(ctx, _dicts(q.get("item")), qr.get("item"), path, path)
    finally:
        _tl.ext_index = saved


def _check_status(w, q: dict, qr: dict, path: str) -> None:
    status = q.get("status")
    if status in ("draft", "retired"):
        w.add("warning", "business-rule", f"The questionnaire '{q.get('url', '')}' has status '{status}'",
              path + ".questionnaire")
    period = q.get("effectivePeriod")
    if isinstance(period, dict):
        when = qr.get("authored") if isinstance(qr.get("authored"), str) else date.today().isoformat()
        start, end = period.get("start"), period.get("end")
        if isinstance(start, str) and when[:len(start)] < start[:len(when)]:
            w.add("warning", "business-rule", f"The questionnaire was not yet in effect when the response was "
                  f"authored (effective from {start})", path + ".questionnaire")
        if isinstance(end, str) and when[:len(end)] > end[:len(when)]:
            w.add("warning", "business-rule", f"The questionnaire was no longer in effect when the response was "
                  f"authored (effective until {end})", path + ".questionnaire")


def _items(ctx: _Ctx, q_items: list, r_items, path: str, parent_path: str) -> None:
    """Check the response items under one parent against the questionnaire items there."""
    w = ctx.w
    r_items = r_items if isinstance(r_items, list) else []
    q_items = _dicts(q_items)
    q_by_link = {_lid(qi): (n, qi) for n, qi in enumerate(q_items)}
    matched: dict[str, list] = {}
    last = -1
    for i, ri in enumerate(r_items):
        if not isinstance(ri, dict):
            continue
        lid = _lid(ri)
        ipath = f"{parent_path}.item[{i}]"
        hit = q_by_link.get(lid)
        if hit is None:
            if lid in ctx.all_links:
                w.add("error", "structure", f"Structural Error: item '{lid}' is in the wrong place", ipath)
            else:
                # a module of a modular form that cannot be resolved may define it
                w.add("warning" if ctx.incomplete else "error", "not-found",
                      f"LinkId '{lid}' not found in questionnaire", parent_path)
            continue
        if hit[0] < last:
            w.add("error", "structure", "Structural Error: items are out of order", ipath)
        last = max(last, hit[0])
        matched.setdefault(lid, []).append((i, ri))
    for qi in q_items:
        if not isinstance(qi, dict):
            continue
        lid = _lid(qi)
        found = matched.get(lid, [])
        enabled = _enabled(ctx, qi)
        if not enabled:
            for i, ri in found:
                if ri.get("answer") or ri.get("item"):
                    w.add("error", "structure", f"Item has answer, even though it is not enabled (item id = "
                          f"'{lid}')", f"{parent_path}.item[{i}]")
            continue
        if not found:
            if qi.get("required") is True and ctx.completed:
                w.add("error", "required", f"No response answer found for required item '{lid}'", parent_path)
            continue
        if len(found) > 1 and not (qi.get("type") == "group" and qi.get("repeats") is True):
            for i, _ in found[1:]:
                w.add("error", "structure", f"Only one response item with this linkId allowed - unless it's a "
                      f"repeating group ('{lid}')", f"{parent_path}.item[{i}]")
        for i, ri in found:
            _item(ctx, qi, ri, f"{parent_path}.item[{i}]")


def _item(ctx: _Ctx, qi: dict, ri: dict, ipath: str) -> None:
    w = ctx.w
    qtype = qi.get("type")
    answers = ri.get("answer") if isinstance(ri.get("answer"), list) else []
    children = _dicts(qi.get("item"))
    if qtype in NO_ANSWER_TYPES:
        if answers:
            w.add("error", "structure", f"Items of type {qtype} should not have answers", ipath)
        if qtype == "group" or ri.get("item"):
            _items(ctx, children, ri.get("item"), ipath, ipath)
        return
    lid = qi.get("linkId")
    if not answers and qi.get("required") is True and ctx.completed:
        w.add("error", "required", f"No response answer found for required item '{lid}'", ipath)
    if len(answers) > 1 and qi.get("repeats") is not True:
        w.add("error", "invalid", "Only one response answer item with this linkId allowed", ipath)
    min_occ = _ext_value(qi, "questionnaire-minOccurs")
    max_occ = _ext_value(qi, "questionnaire-maxOccurs")
    if isinstance(min_occ, int) and len(answers) < min_occ:
        w.add("error", "invalid", f"The minimum number of answers is {min_occ} but this has {len(answers)} answers",
              ipath)
    if isinstance(max_occ, int) and len(answers) > max_occ:
        w.add("error", "invalid", f"The maximum number of answers is {max_occ} but this has {len(answers)} answers",
              ipath)
    allowed = ANSWER_TYPES.get(qtype)
    exclusive_hit = None
    for j, ans in enumerate(answers):
        if not isinstance(ans, dict):
            continue
        apath = f"{ipath}.answer[{j}]"
        vtype, val = _value(ans)
        if vtype is not None and allowed is not None:
            vpath = f"{apath}.value.ofType({vtype})"
            if vtype not in allowed:
                want = allowed[0] if len(allowed) == 1 else "one of " + ", ".join(allowed)
                w.add("error", "structure", f"Answer value must be of the type {want} not {vtype}", vpath)
            else:
                _answer(ctx, qi, qtype, vtype, val, apath, vpath)
                if _is_exclusive(qi, vtype, val):
                    exclusive_hit = j
        if ans.get("item"):
            _items(ctx, children, ans.get("item"), apath, apath)
    if exclusive_hit is not None and len(answers) > 1:
        _, val = _value(answers[exclusive_hit])
        shown = f"{val.get('system')}#{val.get('code')}" if isinstance(val, dict) else str(val)
        w.add("error", "invariant", f"Selected answer {shown} is an exclusive option - can't select anything else "
              "at the same time", f"{ipath}.answer[{exclusive_hit}]")
    if ri.get("item") and qtype not in NO_ANSWER_TYPES:
        _items(ctx, children, ri.get("item"), ipath, ipath)


# -- enableWhen -----------------------------------------------------------------------------
def _enabled(ctx: _Ctx, qi: dict) -> bool:
    expr = _ext_value(qi, "sdc-questionnaire-enableWhenExpression", SDC)
    if isinstance(expr, dict) and isinstance(expr.get("expression"), str):
        r = ctx.w.v.evaluate_expression(ctx.w, expr["expression"], ctx.qr, {"questionnaire": ctx.q})
        if r and isinstance(r[0], bool):
            return r[0]
        if r is None:
            return True  # cannot evaluate: do not require the item
    whens = [e for e in qi.get("enableWhen", ()) if isinstance(e, dict)] if isinstance(qi.get("enableWhen"), list) \
        else []
    if not whens:
        return True
    results = [_when(ctx, e) for e in whens]
    return all(results) if qi.get("enableBehavior") == "all" else any(results)


def _same(a_type, a, b_type, b) -> bool | None:
    if isinstance(a, dict) and isinstance(b, dict):
        if "code" in a or "code" in b:
            return a.get("code") == b.get("code") and (a.get("system") == b.get("system") or not a.get("system")
                                                       or not b.get("system"))
        if "value" in a:
            return _num(a.get("value")) == _num(b.get("value"))
        if "reference" in a:
            return a.get("reference") == b.get("reference")
        return a == b
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return na == nb
    return a == b


def _order(a, b) -> int | None:
    if isinstance(a, dict) and isinstance(b, dict):
        a, b = a.get("value"), b.get("value")
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    return None


def _when(ctx: _Ctx, ew: dict) -> bool:
    op = ew.get("operator")
    target_type, target = _answer_value(ew)
    answers = ctx.answers.get(ew.get("question"), [])
    if op == "exists":
        return bool(answers) == (target is True)
    values = [_value(a) for a in answers]
    values = [v for v in values if v[0] is not None]
    if not values:
        return False
    for vt, v in values:
        if op == "=" and _same(vt, v, target_type, target):
            return True
        if op == "!=" and not _same(vt, v, target_type, target):
            return True
        if op in (">", "<", ">=", "<="):
            c = _order(v, target)
            if c is not None and ((op == ">" and c > 0) or (op == "<" and c < 0) or (op == ">=" and c >= 0)
                                  or (op == "<=" and c <= 0)):
                return True
    return False


# -- one answer -----------------------------------------------------------------------------
def _is_exclusive(qi: dict, vtype: str, val) -> bool:
    for opt in qi.get("answerOption", ()) if isinstance(qi.get("answerOption"), list) else ():
        if isinstance(opt, dict) and _ext_value(opt, "questionnaire-optionExclusive") is True:
            ot, ov = _value(opt)
            if ot == vtype and _same(ot, ov, vtype, val):
                return True
    return False


def _answer(ctx: _Ctx, qi: dict, qtype: str, vtype: str, val, apath: str, vpath: str) -> None:
    w = ctx.w
    options = qi.get("answerOption") if isinstance(qi.get("answerOption"), list) else None
    if options and not (qtype == "open-choice" and vtype == "string"):
        if not any(isinstance(o, dict) and _value(o)[0] == vtype and _same(vtype, _value(o)[1], vtype, val)
                   for o in options):
            if vtype == "Coding" and isinstance(val, dict):
                text = f"The code {val.get('system')}::{val.get('code')} is not in the set of permitted values"
            else:
                text = f"The {vtype} {val} is not in the set of permitted values"
            w.add("error", "invariant", text, apath)
    vs_url = qi.get("answerValueSet")
    if isinstance(vs_url, str) and vtype == "Coding" and isinstance(val, dict):
        _answer_value_set(ctx, qi, vs_url, val, apath)
    _bounds(ctx, qi, vtype, val, vpath)
    if vtype in ("string", "uri") and isinstance(val, str):
        _text_rules(ctx, qi, val, vpath)
    if vtype == "decimal":
        places = _ext_value(qi, "maxDecimalPlaces")
        if isinstance(places, int) and isinstance(val, Decimal) and -val.as_tuple().exponent > places:
            w.add("error", "invariant", f"The value {val} has more than {places} decimal places", vpath)
    if vtype == "Attachment" and isinstance(val, dict):
        _attachment(ctx, qi, val, apath)
    if vtype == "Quantity" and isinstance(val, dict):
        _quantity_units(ctx, qi, val, vpath)


def _answer_value_set(ctx: _Ctx, qi: dict, vs_url: str, coding: dict, apath: str) -> None:
    vs_url_ref = vs_url
    if vs_url.startswith("#"):
        vs = next((c for c in ctx.q.get("contained", ()) if isinstance(c, dict) and c.get("id") == vs_url[1:]), None)
        if vs is None:
            return
        ctx.w.v.definitions.add(vs) if vs.get("url") else None
        vs_url_ref = vs.get("url") or vs_url
    compiled = ctx.term.value_set(vs_url_ref, ctx.w.resolver)
    if compiled is None:
        ctx.w.add("warning", "not-found", f"The value set {vs_url} could not be found, so the answer cannot be "
                  "checked", apath)
        return
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(code, str):
        return
    inside = bindings.contains(ctx.w, compiled, system if isinstance(system, str) else None, code)
    problem = None
    if inside is True and isinstance(coding.get("display"), str) and isinstance(system, str):
        r = bindings.check_coding(ctx.w, system, code, coding["display"])
        if r.display_ok is False:
            problem = (f" Terminology Error: Wrong Display Name '{coding['display']}' for {system}#{code}. "
                       f"Valid display is '{r.valid_display}'")
    if inside is False or problem:
        ctx.w.add("error", "code-invalid", f"The code '{code}' in the system '{system}' is not in the options value "
                  f"set ({compiled.name}) specified by the questionnaire.{problem or ''}", apath)


def _bounds(ctx: _Ctx, qi: dict, vtype: str, val, vpath: str) -> None:
    w = ctx.w
    if vtype == "Quantity":
        for name, kind in (("sdc-questionnaire-minQuantity", "minimum"), ("sdc-questionnaire-maxQuantity", "maximum")):
            bound = _ext_value(qi, name, SDC)
            if isinstance(bound, dict) and isinstance(val, dict):
                _compare_quantity(w, val, bound, kind, vpath)
        return
    for name, kind in (("minValue", "minimum"), ("maxValue", "maximum")):
        bound = _ext_value(qi, name)
        if bound is None:
            continue
        c = _order(val, bound)
        if c is None:
            continue
        if kind == "minimum" and c < 0:
            w.add("error", "invariant", f"The value {val} is less than the allowed minimum of {bound}", vpath)
        elif kind == "maximum" and c > 0:
            w.add("error", "invariant", f"The value {val} is greater than the allowed maximum of {bound}", vpath)


def _q_text(q: dict, with_code: bool) -> str:
    text = f"{q.get('value')} {q.get('unit') or q.get('code') or ''}".strip()
    if with_code:
        system = "UCUM" if q.get("system") == UCUM else q.get("system")
        text += f" ({system}#{q.get('code')})"
    return text


def _compare_quantity(w, val: dict, bound: dict, kind: str, vpath: str) -> None:
    formal = all(isinstance(x.get("code"), str) and isinstance(x.get("system"), str) for x in (val, bound))
    if not formal:
        w.add("error", "invariant", f"The quantity {_q_text(val, False)} cannot be compared to the allowed {kind} of "
              f"{_q_text(bound, False)} because no formal units are specified", vpath)
        return
    v = None
    if val["system"] == bound["system"] == UCUM:
        v = ucum.convert(val.get("value"), val["code"], bound["code"]) if _num(val.get("value")) is not None else None
    elif val["system"] == bound["system"] and val["code"] == bound["code"]:
        v = _num(val.get("value"))
    if v is None:
        w.add("error", "invariant", f"The quantity {_q_text(val, True)} cannot be compared to the allowed {kind} of "
              f"{_q_text(bound, True)}", vpath)
        return
    b = _num(bound.get("value"))
    if b is None:
        return
    if kind == "minimum" and v < b:
        w.add("error", "invariant", f"The quantity {_q_text(val, True)} is less than the allowed minimum of "
              f"{_q_text(bound, True)}", vpath)
    if kind == "maximum" and v > b:
        w.add("error", "invariant", f"The quantity {_q_text(val, True)} is greater than the allowed maximum of "
              f"{_q_text(bound, True)}", vpath)


def _quantity_units(ctx: _Ctx, qi: dict, val: dict, vpath: str) -> None:
    options = [e.get("valueCoding") for e in _ext(qi, "questionnaire-unitOption") if isinstance(e.get("valueCoding"),
                                                                                                   dict)]
    if options and not any(o.get("system") == val.get("system") and o.get("code") == val.get("code")
                           for o in options):
        allowed = ",".join(f"{o.get('display') or o.get('code')} ({'UCUM' if o.get('system') == UCUM else o.get('system')}"
                           f"#{o.get('code')})" for o in options)
        ctx.w.add("error", "invariant", f"The value {_q_text(val, True)} has a unit that is not valid (allowed = "
                  f"{allowed})", vpath)
    vs_url = _ext_value(qi, "questionnaire-unitValueSet")
    if isinstance(vs_url, str):
        code = val.get("code")
        inside = ctx.term.in_value_set(vs_url, val.get("system"), code, ctx.w.resolver) if isinstance(code, str) \
            else False
        if inside is False:
            ctx.w.add("error", "invariant", f"The value {_q_text(val, True)} has a unit that is not in the unit value "
                      f"set '{vs_url}'", vpath)


def _text_rules(ctx: _Ctx, qi: dict, val: str, vpath: str) -> None:
    w = ctx.w
    max_len = qi.get("maxLength")
    if isinstance(max_len, int) and len(val) > max_len:
        w.add("error", "invariant", f"The answer is {len(val)} characters long, more than the maximum length of "
              f"{max_len}", vpath)
    min_len = _ext_value(qi, "minLength")
    if isinstance(min_len, int) and len(val) < min_len:
        w.add("error", "invariant", f"The answer is {len(val)} characters long, less than the minimum length of "
              f"{min_len}", vpath)
    rx = _ext_value(qi, "regex")
    if isinstance(rx, str):
        try:
            ok = re.fullmatch(rx, val) is not None
        except re.error:
            return
        if not ok:
            fmt = _ext_value(qi, "entryFormat")
            shown = f"the expected format '{fmt}' (regex '{rx}')" if isinstance(fmt, str) else f"the regex '{rx}'"
            w.add("error", "invariant", f"The answer '{val}' does not conform to {shown}", vpath)


def _attachment(ctx: _Ctx, qi: dict, val: dict, apath: str) -> None:
    w = ctx.w
    types = [e.get("valueCode") for e in _ext(qi, "mimeType") if isinstance(e.get("valueCode"), str)]
    ct = val.get("contentType")
    if types and isinstance(ct, str) and ct not in types:
        w.add("error", "required", f"The mime type {ct} is not valid for this answer (allowed = {', '.join(types)})",
              apath)
    max_size = _ext_value(qi, "maxSize")
    if _num(max_size) is not None:
        size = val.get("size")
        if not isinstance(size, int) and isinstance(val.get("data"), str):
            try:
                size = len(base64.b64decode(val["data"]))
            except (binascii.Error, ValueError):
                size = None
        if isinstance(size, int) and size > _num(max_size):
            w.add("error", "required", f"The attachment is too large (allowed = {max_size}, found = {size})", apath)
