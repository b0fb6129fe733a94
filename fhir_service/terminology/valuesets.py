"""ValueSet membership compiled from ``compose`` (or a stored ``expansion``).

A compiled ValueSet answers ``contains(system, code)`` with True, False or None ("cannot
tell": the code system is not available offline, e.g. SNOMED CT or LOINC filters).
"""
from __future__ import annotations

import re
from typing import Callable

# Systems whose codes we cannot enumerate but which are well known: a ValueSet that includes
# the whole system accepts any code (the HL7 validator offline does not reject them either).
GRAMMAR_SYSTEMS = frozenset({
    "http://unitsofmeasure.org", "urn:ietf:bcp:47", "urn:ietf:bcp:13", "urn:iso:std:iso:3166",
    "urn:iso:std:iso:4217", "http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct",
    "http://loinc.org", "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/ndc",
    "http://www.ama-assn.org/go/cpt", "http://hl7.org/fhir/sid/cvx", "urn:iso:std:iso:11073:10101",
    "http://dicom.nema.org/resources/ontology/DCM", "http://hl7.org/fhir/sid/icd-9-cm",
    "http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:1.2.36.1.2001.1005.17",
})


class Include:
    """One compose.include (or exclude) entry."""

    __slots__ = ("system", "codes", "filters", "value_sets", "whole_system")

    def __init__(self, system, codes, filters, value_sets):
        self.system: str | None = system
        self.codes: dict[str, dict] | None = codes  # code -> concept (display, designation)
        self.filters: list[Callable] = filters
        self.value_sets: list["CompiledValueSet"] = value_sets
        self.whole_system = system is not None and codes is None and not filters


class CompiledValueSet:
    def __init__(self, url: str, name: str, version: str | None, includes: list[Include],
                 excludes: list[Include], service, expansion: dict | None = None):
        self.url = url
        self.name = name
        self.version = version
        self.includes = includes
        self.excludes = excludes
        self.service = service
        self.expansion = expansion  # (system, code) -> display, from a stored expansion
        self.systems = {i.system for i in includes if i.system}
        for i in includes:
            for vs in i.value_sets:
                self.systems |= vs.systems

    @property
    def label(self) -> str:
        return f"{self.url}|{self.version}" if self.version else self.url

    def contains(self, system: str | None, code: str) -> bool | None:
        if self.expansion is not None and not self.includes:
            return (system, code) in self.expansion or (system is None and any(c == code for _, c in self.expansion))
        result = self._match(self.includes, system, code)
        if result and self.excludes and self._match(self.excludes, system, code):
            return False
        return result

    def _match(self, entries: list[Include], system, code) -> bool | None:
        unknown = False
        for inc in entries:
            r = self._match_one(inc, system, code)
            if r:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    def _match_one(self, inc: Include, system, code) -> bool | None:
        if inc.system is not None:
            if system is not None and system != inc.system:
                return False
            cs = self.service.code_system(inc.system)
            if inc.codes is not None:
                if code in inc.codes:
                    ok = True
                elif cs is not None and not cs.case_sensitive:
                    ok = any(c.lower() == code.lower() for c in inc.codes)
                else:
                    ok = False
                if not ok:
                    return False
            elif inc.filters:
                if cs is None:
                    return None
                for f in inc.filters:
                    r = f(cs, code)
                    if not r:
                        return r
            else:  # whole system
                if cs is None:
                    return True if inc.system in GRAMMAR_SYSTEMS else None
                if cs.lookup(code) is None:
                    return False if cs.complete else None
        for vs in inc.value_sets:
            r = vs.contains(system, code)
            if not r:
                return r
        return True

    def display_of(self, system: str | None, code: str) -> list[str]:
        """Displays the ValueSet itself gives the code (compose concepts), if any."""
        out = []
        for inc in self.includes:
            if inc.codes and (system is None or inc.system == system) and code in inc.codes:
                c = inc.codes[code]
                if isinstance(c.get("display"), str):
                    out.append(c["display"])
                out += [d["value"] for d in c.get("designation", ()) if isinstance(d.get("value"), str)]
        return out

    def enumerate(self, limit: int = 10000) -> list[tuple[str, str, str | None]] | None:
        """All (system, code, display) when the ValueSet is finite and known, else None."""
        out: list = []
        if self.expansion is not None and not self.includes:
            return [(s, c, d) for (s, c), d in self.expansion.items()]
        for inc in self.includes:
            cs = self.service.code_system(inc.system) if inc.system else None
            if inc.codes is not None:
                for code, c in inc.codes.items():
                    disp = c.get("display") or (cs.lookup(code) or {}).get("display") if cs else c.get("display")
                    out.append((inc.system, code, disp))
            elif inc.system:
                if cs is None or not cs.complete:
                    return None
                for code, c in cs.concepts.items():
                    if all(f(cs, code) for f in inc.filters):
                        out.append((inc.system, code, c.get("display")))
            for vs in inc.value_sets:
                sub = vs.enumerate(limit)
                if sub is None:
                    return None
                if inc.system is None:
                    out.extend(sub)
            if len(out) > limit:
                return None
        if self.excludes:
            out = [x for x in out if not self._match(self.excludes, x[0], x[1])]
        return out


def compile_filter(f: dict) -> Callable | None:
    prop, op, value = f.get("property"), f.get("op"), f.get("value")
    if not isinstance(value, str):
        return None
    if op in ("is-a", "descendent-of", "is-not-a") and prop == "concept":
        if op == "is-a":
            return lambda cs, code: (cs.lookup(code) is not None and cs.is_a(code, value)) if cs.complete or \
                cs.lookup(code) is not None else None
        if op == "descendent-of":
            return lambda cs, code: code != value and cs.lookup(code) is not None and cs.is_a(code, value)
        return lambda cs, code: cs.lookup(code) is not None and not cs.is_a(code, value)
    if op == "=":
        if prop == "code":
            return lambda cs, code: code == value
        return lambda cs, code: cs.lookup(code) is not None and str(cs.property_value(code, prop)).lower() == \
            value.lower()
    if op == "regex":
        rx = re.compile(value)
        if prop == "code":
            return lambda cs, code: bool(rx.fullmatch(code))
        return lambda cs, code: bool(rx.fullmatch(str(cs.property_value(code, prop) or "")))
    if op == "in" and prop == "concept":
        allowed = set(value.split(","))
        return lambda cs, code: code in allowed
    if op == "exists":
        want = value == "true"
        return lambda cs, code: (cs.property_value(code, prop) is not None) == want
    return None
