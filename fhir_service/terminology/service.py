"""Terminology over the definitions the server holds: CodeSystem lookups, ValueSet membership,
validate-code. Everything compiled is cached; the cache is keyed on the resource object, so a
replaced definition is recompiled.
"""
from __future__ import annotations

import threading
from typing import Callable, NamedTuple

from .codesystems import CodeSystemIndex
from .valuesets import GRAMMAR_SYSTEMS, CompiledValueSet, Include, compile_filter

Resolver = Callable[[str], "dict | None"]


class CodeResult(NamedTuple):
    """Outcome of validate-code. ``valid`` is None when it cannot be decided offline."""
    valid: bool | None
    message: str | None = None
    display_ok: bool | None = None
    valid_display: str | None = None
    unknown_system: bool = False
    unknown_code: bool = False


class Terminology:
    def __init__(self, definitions, resolver: Resolver | None = None):
        self.definitions = definitions
        self.resolver = resolver
        # url -> (registry generation it is valid for, or -1; compiled; source resource)
        self._cs: dict[str, tuple] = {}
        self._vs: dict[str, tuple] = {}
        self._lock = threading.RLock()

    @classmethod
    def for_definitions(cls, definitions) -> "Terminology":
        t = definitions.__dict__.get("_terminology")
        if t is None:
            t = definitions.__dict__["_terminology"] = cls(definitions)
        return t

    def _find(self, url: str, rtype: str, resolver: Resolver | None = None) -> dict | None:
        res = self.definitions.get(url)
        if res is not None and res.get("resourceType") == rtype:
            return res
        for r in (resolver, self.resolver):
            if r is not None:
                try:
                    res = r(url)
                except Exception:
                    res = None
                if isinstance(res, dict) and res.get("resourceType") == rtype:
                    return res
        return None

    def _cached(self, table: dict, url: str, rtype: str, build, resolver):
        """A compiled CodeSystem/ValueSet. What the registry holds is reused until the registry
        changes (its generation); what the server's resolver returns is rebuilt when it differs."""
        gen = self.definitions.generation
        hit = table.get(url)
        if hit is not None and hit[0] == gen:
            return hit[1]
        res = self._find(url, rtype, resolver)
        if res is None and "|" in url:
            res = self._find(url.split("|", 1)[0], rtype, resolver)
        if hit is not None and hit[2] is res and res is not None and hit[1] is not None:
            return hit[1]
        with self._lock:
            table[url] = (-1, None, res)  # guards against ValueSet import cycles
            compiled = build(res) if res is not None else None
            stable = res is None or self.definitions.get(url) is res or self.definitions.get(url.split("|")[0]) is res
            table[url] = (gen if stable else -1, compiled, res)
        return compiled

    # -- code systems ------------------------------------------------------------------------
    def code_system(self, url: str | None, resolver: Resolver | None = None) -> CodeSystemIndex | None:
        if not url:
            return None
        return self._cached(self._cs, url, "CodeSystem", lambda cs: CodeSystemIndex(cs) if cs.get("content") not in
                            ("not-present", "supplement") else None, resolver)

    def knows_system(self, url: str) -> bool:
        cs = self._find(url, "CodeSystem")
        return cs is not None or url in GRAMMAR_SYSTEMS

    # -- value sets --------------------------------------------------------------------------
    def value_set(self, url: str | None, resolver: Resolver | None = None) -> CompiledValueSet | None:
        if not url:
            return None
        return self._cached(self._vs, url, "ValueSet", lambda vs: self._compile_vs(vs, resolver), resolver)

    def _compile_vs(self, vs: dict, resolver) -> CompiledValueSet:
        compose = vs.get("compose") or {}
        includes = [self._compile_include(i, resolver) for i in compose.get("include", ()) if isinstance(i, dict)]
        excludes = [self._compile_include(i, resolver) for i in compose.get("exclude", ()) if isinstance(i, dict)]
        expansion = None
        if not includes and isinstance(vs.get("expansion"), dict):
            expansion = {}
            stack = list(vs["expansion"].get("contains", ()))
            while stack:
                c = stack.pop()
                if isinstance(c, dict):
                    if c.get("code"):
                        expansion[(c.get("system"), c["code"])] = c.get("display")
                    stack.extend(c.get("contains", ()))
        return CompiledValueSet(vs.get("url", ""), vs.get("title") or vs.get("name") or vs.get("url", ""),
                                vs.get("version"), includes, excludes, self, expansion)

    def _compile_include(self, inc: dict, resolver) -> Include:
        system = inc.get("system")
        codes = None
        if inc.get("concept"):
            codes = {c["code"]: c for c in inc["concept"] if isinstance(c, dict) and isinstance(c.get("code"), str)}
        filters = []
        for f in inc.get("filter", ()):
            fn = compile_filter(f) if isinstance(f, dict) else None
            filters.append(fn or (lambda cs, code: None))
        value_sets = []
        for url in inc.get("valueSet", ()):
            sub = self.value_set(url, resolver)
            if sub is None:
                sub = CompiledValueSet(url, url, None, [Include(None, None, [lambda cs, code: None], [])], [], self)
            value_sets.append(sub)
        inc_obj = Include(system, codes, filters, value_sets)
        if system and codes is None and not filters:
            inc_obj.whole_system = True
        return inc_obj

    # -- validate-code -----------------------------------------------------------------------
    def check_coding(self, system: str | None, code: str, display: str | None = None) -> CodeResult:
        """Is the code valid in its code system, and is the display right?"""
        if not system:
            return CodeResult(None)
        cs = self.code_system(system)
        if cs is None:
            return CodeResult(None, unknown_system=not self.knows_system(system))
        concept = cs.lookup(code)
        if concept is None:
            if cs.complete:
                return CodeResult(False, f"Unknown code '{code}' in the CodeSystem '{system}' version "
                                  f"'{cs.version}'" if cs.version else f"Unknown code '{code}' in the CodeSystem "
                                  f"'{system}'", unknown_code=True)
            return CodeResult(None)
        if display is not None:
            displays = cs.displays(code)
            if displays and not any(_same_display(display, d) for d in displays):
                return CodeResult(True, None, False, displays[0])
        return CodeResult(True, display_ok=True if display is not None else None)

    def in_value_set(self, url: str, system: str | None, code: str, resolver=None) -> bool | None:
        vs = self.value_set(url, resolver)
        if vs is None:
            return None
        return vs.contains(system, code)


def _same_display(a: str, b: str) -> bool:
    # The HL7 validator compares displays case-insensitively and ignoring runs of whitespace.
    return " ".join(a.lower().split()) == " ".join(b.lower().split())
