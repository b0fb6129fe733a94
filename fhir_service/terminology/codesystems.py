"""CodeSystems indexed for fast lookups: code -> display, parents, properties."""
from __future__ import annotations


class CodeSystemIndex:
    """One CodeSystem's concepts, flattened. ``complete`` says whether an unknown code is wrong."""

    __slots__ = ("url", "version", "name", "complete", "case_sensitive", "concepts", "parents", "_lower")

    def __init__(self, cs: dict):
        self.url = cs.get("url", "")
        self.version = cs.get("version")
        self.name = cs.get("title") or cs.get("name") or self.url
        self.complete = cs.get("content", "complete") == "complete"
        self.case_sensitive = cs.get("caseSensitive", True) is not False
        self.concepts: dict[str, dict] = {}
        self.parents: dict[str, set[str]] = {}
        self._lower: dict[str, str] | None = None
        self._add(cs.get("concept", ()), None)
        # Hierarchies expressed as "parent" properties instead of nesting
        for code, c in self.concepts.items():
            for p in c.get("property", ()):
                if p.get("code") in ("parent", "subsumedBy") and isinstance(p.get("valueCode"), str):
                    self.parents.setdefault(code, set()).add(p["valueCode"])

    def _add(self, concepts, parent: str | None) -> None:
        for c in concepts or ():
            code = c.get("code")
            if not isinstance(code, str):
                continue
            self.concepts[code] = c
            if parent is not None:
                self.parents.setdefault(code, set()).add(parent)
            self._add(c.get("concept"), code)

    def lookup(self, code: str) -> dict | None:
        c = self.concepts.get(code)
        if c is None and not self.case_sensitive:
            if self._lower is None:
                self._lower = {k.lower(): k for k in self.concepts}
            k = self._lower.get(code.lower())
            c = self.concepts.get(k) if k else None
        return c

    def displays(self, code: str) -> list[str]:
        c = self.lookup(code)
        if c is None:
            return []
        out = [c["display"]] if isinstance(c.get("display"), str) else []
        out += [d["value"] for d in c.get("designation", ()) if isinstance(d.get("value"), str)]
        return out

    def is_a(self, code: str, ancestor: str) -> bool:
        """``code`` equals or descends from ``ancestor``."""
        if code == ancestor:
            return True
        seen = set()
        stack = list(self.parents.get(code, ()))
        while stack:
            p = stack.pop()
            if p == ancestor:
                return True
            if p not in seen:
                seen.add(p)
                stack.extend(self.parents.get(p, ()))
        return False

    def property_value(self, code: str, prop: str):
        c = self.lookup(code)
        if c is None:
            return None
        for p in c.get("property", ()):
            if p.get("code") == prop:
                for k, v in p.items():
                    if k.startswith("value"):
                        return v
        return None

    def is_inactive(self, code: str) -> bool:
        v = self.property_value(code, "status")
        return v in ("retired", "deprecated", "inactive") or self.property_value(code, "inactive") is True
