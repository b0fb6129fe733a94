"""Terminology bindings and code validity, with the HL7 validator's severities.

- required: not in the ValueSet is an error;
- extensible: a warning; preferred: information; example: not checked;
- a code unknown in a complete CodeSystem we hold is an error whatever the binding;
- a wrong display is a warning;
- when membership cannot be decided offline (SNOMED CT/LOINC filters, systems we do not
  hold) nothing is reported, as the HL7 validator does without a terminology server.
"""
from __future__ import annotations

from ..terminology import Terminology

_SEVERITY = {"required": "error", "extensible": "warning", "preferred": "information"}
CODED_TYPES = frozenset({"code", "Coding", "CodeableConcept", "Quantity", "string", "uri"})
_HL7_SYSTEM_PREFIXES = ("http://hl7.org/fhir/", "http://terminology.hl7.org/")


def terminology(w) -> Terminology:
    return Terminology.for_definitions(w.v.definitions)


# Answers depend only on the compiled ValueSet / CodeSystems and the registry's generation:
# remembered per ValueSet and per code system lookup, in the Validator's cache (bounded).
_MISS = object()
_MEMO_LIMIT = 4096
# Memos hold at most _MEMO_LIMIT entries, but their keys are client text: a longer one is looked
# up each time rather than kept (else a few thousand huge displays would stay in memory).
_MEMO_MAX_TEXT = 256


def _memo(w, key, owner=None) -> dict:
    cache = w.v.cache
    gen = w.v.definitions.generation
    m = cache.get(key)
    if m is None or m[0] != gen or m[1] is not owner:
        if len(cache) > _MEMO_LIMIT:
            cache.clear()
        m = cache[key] = (gen, owner, {})
    d = m[2]
    if len(d) >= _MEMO_LIMIT:
        d.clear()
    return d


def contains(w, vs, system, code, d=None):
    """``vs.contains(system, code)``, remembered per compiled ValueSet (``d``: its memo, when
    the caller has it at hand)."""
    if d is None:
        d = _memo(w, ("vs-memo", id(vs)), vs)
    elif len(d) >= _MEMO_LIMIT:
        d.clear()
    return _remembered(d, (system, code), lambda: vs.contains(system, code))


def check_coding(w, system: str, code: str, display):
    """``Terminology.check_coding``, remembered per code system lookup."""
    return _remembered(_memo(w, "coding-memo"), (system, code, display),
                       lambda: terminology(w).check_coding(system, code, display))


def _remembered(d: dict, key: tuple, compute):
    """``compute()``, kept in the memo ``d`` under ``key``, unless a part of the key (client
    text) is long: that is computed each time instead."""
    for part in key:
        if type(part) is str and len(part) > _MEMO_MAX_TEXT:
            return compute()
    r = d.get(key, _MISS)
    if r is _MISS:
        r = d[key] = compute()
    return r


def _value_set(w, node, url: str):
    """The bound ValueSet and its membership memo (None: contains() finds it). Without a
    server resolver the ValueSet comes from the registry alone, so both are kept on the
    element until the registry changes."""
    if w.resolver is not None:
        return terminology(w).value_set(url, w.resolver), None
    gen = w.v.definitions.generation
    hit = node.extras.get("binding-vs")
    if hit is None or hit[0] != gen or hit[1] != url:
        vs = terminology(w).value_set(url, None)
        hit = node.extras["binding-vs"] = (gen, url, vs, None if vs is None else _memo(w, ("vs-memo", id(vs)), vs))
    return hit[2], hit[3]


def binding_of(node):
    b = node.extras.get("binding", False)
    if b is False:
        b = None
        raw = node.ed.get("binding")
        if isinstance(raw, dict) and raw.get("strength") in _SEVERITY and isinstance(raw.get("valueSet"), str):
            b = (raw["strength"], raw["valueSet"])
        node.extras["binding"] = b
    return b


def _vs_text(vs) -> str:
    return f"'{vs.name}' ({vs.label})"


def check(w, node, type_code: str, val, path: str) -> None:
    """The binding of ``node`` applied to one value of type ``type_code``."""
    b = binding_of(node)
    if b is None or type_code not in CODED_TYPES or val is None:
        return
    strength, vs_url = b
    vs, memo = _value_set(w, node, vs_url)
    if vs is None:
        if strength == "required":
            w.add("warning", "not-found", f"ValueSet {vs_url} not found, so the code cannot be checked", path)
        return
    sev = _SEVERITY[strength]
    if type_code in ("code", "string", "uri"):
        if not isinstance(val, str):
            return
        if contains(w, vs, None, val, memo) is False:
            w.add(sev, "code-invalid", f"The value provided ('{val}') was not found in the value set {_vs_text(vs)}"
                  + _tail(strength), path)
        return
    if not isinstance(val, dict):
        return
    if type_code == "Coding":
        _check_codings(w, vs, [val], strength, sev, path, single=True, memo=memo)
    elif type_code == "CodeableConcept":
        codings = [c for c in val.get("coding", ()) if isinstance(c, dict)] if isinstance(val.get("coding"), list) else []
        if not codings:
            if strength == "required" and val.get("text") is not None:
                w.add("error", "code-invalid", f"No code provided, and a code is required from the value set "
                      f"{_vs_text(vs)}", path)
            return
        _check_codings(w, vs, codings, strength, sev, path, single=False, memo=memo)
    elif type_code == "Quantity":
        code = val.get("code")
        if isinstance(code, str):
            system = val.get("system")
            if contains(w, vs, system if isinstance(system, str) else None, code, memo) is False:
                w.add(sev, "code-invalid", f"The code provided ({system}#{code}) was not found in the value set "
                      f"{_vs_text(vs)}" + _tail(strength), path)


def _tail(strength: str) -> str:
    if strength == "required":
        return ", and a code from this value set is required"
    if strength == "extensible":
        return ", and a code should come from this value set unless it has no suitable code"
    return ", and a code is recommended to come from this value set"


def _check_codings(w, vs, codings, strength, sev, path, single: bool, memo=None) -> None:
    results = []
    for c in codings:
        code = c.get("code")
        if not isinstance(code, str):
            results.append(None)
            continue
        system = c.get("system") if isinstance(c.get("system"), str) else None
        results.append(contains(w, vs, system, code, memo))
    if any(r is True for r in results) or all(r is None for r in results):
        return
    if any(r is None for r in results) and strength != "required":
        return
    if any(r is None for r in results):
        return  # cannot tell for some coding: offline, not an error
    shown = ", ".join(f"{c.get('system')}#{c.get('code')}" for c in codings)
    if single:
        text = f"The Coding provided ({shown}) was not found in the value set {_vs_text(vs)}" + _tail(strength)
    else:
        text = f"None of the codings provided are in the value set {_vs_text(vs)}" + _tail(strength) + \
               f" (codes = {shown})"
    w.add(sev, "code-invalid", text, path)


def check_coding_validity(w, coding: dict, path: str) -> None:
    """Every Coding: a known, complete CodeSystem must define the code; displays should match."""
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(system, str) or not isinstance(code, str):
        return
    display = coding.get("display") if isinstance(coding.get("display"), str) else None
    r = check_coding(w, system, code, display)
    if r.valid is False:
        w.add("error", "code-invalid", r.message or f"Unknown code '{code}'", path + ".code")
    elif r.display_ok is False:
        w.add("warning", "invalid", f"Wrong Display Name '{display}' for {system}#{code}. Valid display is "
              f"'{r.valid_display}'", path + ".display")
    elif r.unknown_system and system.startswith(_HL7_SYSTEM_PREFIXES):
        w.add("warning", "not-found", f"A definition for CodeSystem '{system}' could not be found, so the code "
              "cannot be validated", path + ".system")
