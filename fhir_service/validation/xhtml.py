"""Narrative XHTML: well-formed, FHIR's allowed elements and attributes, no active content,
some text (txt-1, txt-2), and internal links that resolve.

Parsed with expat (C, fast). HTML named entities (``&nbsp;``) are accepted, as by the HL7
validator, by turning them into character references first.
"""
from __future__ import annotations

import re
from html.entities import name2codepoint
from xml.parsers import expat

XHTML_NS = "http://www.w3.org/1999/xhtml"
ALLOWED_ELEMENTS = frozenset("""
p br div h1 h2 h3 h4 h5 h6 a span b em i strong small big tt dfn q var abbr acronym cite blockquote
hr address bdo kbd sub sup ul ol li dl dt dd pre table caption colgroup col thead tr tfoot tbody th td
code samp img map area u s strike del ins font center wbr figure figcaption
""".split())
ALLOWED_ATTRIBUTES = frozenset("""
title style class id lang xml:lang dir accesskey tabindex href name src alt colspan rowspan width height
border cellpadding cellspacing align valign span summary frame rules scope axis headers abbr char charoff
start type value compact coords shape nohref usemap longdesc hreflang rel rev charset cite datetime xmlns
bgcolor color size face nowrap clear reversed
""".split())
_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}


def _entities(text: str) -> str:
    def sub(m):
        name = m.group(1)
        if name in _XML_ENTITIES:
            return m.group(0)
        cp = name2codepoint.get(name)
        return f"&#{cp};" if cp is not None else m.group(0)
    return _ENTITY.sub(sub, text) if "&" in text else text


class _Scan:
    def __init__(self):
        self.problems: list[tuple[str, str]] = []  # (severity, text)
        self.depth = 0
        self.root_ok = False
        self.text = False
        self.anchors: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (href, where)
        self.stack: list[str] = []

    def start(self, name: str, attrs: dict) -> None:
        local = name.rsplit(" ", 1)[-1]  # expat namespace mode: "uri local"
        ns = name.rsplit(" ", 1)[0] if " " in name else ""
        self.stack.append(local)
        if self.depth == 0:
            self.root_ok = local == "div" and ns == XHTML_NS
            if local != "div":
                self.problems.append(("error", f"Wrong name on the xhtml element - must start with div, not {local}"))
            elif ns != XHTML_NS:
                self.problems.append(("error", "Wrong namespace on the XHTML ('" + ns + "', should be '" + XHTML_NS
                                      + "')"))
        self.depth += 1
        if ns and ns != XHTML_NS:
            self.problems.append(("error", f"Illegal element namespace '{ns}' in the XHTML"))
        elif local not in ALLOWED_ELEMENTS:
            self.problems.append(("error", f"Illegal element name in the XHTML ('{local}')"))
        for a, v in attrs.items():
            an = a.rsplit(" ", 1)[-1]
            if a.startswith("http://www.w3.org/XML/1998/namespace "):
                an = "xml:" + an
            if an.lower().startswith("on"):
                self.problems.append(("error", f"Illegal attribute name in the XHTML ('{an}' on '{local}'): "
                                      "event handlers are active content"))
            elif an not in ALLOWED_ATTRIBUTES:
                self.problems.append(("error", f"Illegal attribute name in the XHTML ('{an}' on '{local}')"))
            if an in ("href", "src") and v.strip().lower().startswith(("javascript:", "vbscript:", "data:text/html")):
                self.problems.append(("error", f"Active content is not allowed in the XHTML ({an}='{v[:40]}')"))
            if an in ("id", "name"):
                self.anchors.add(v)
            if an == "href" and v.startswith("#") and local == "a":
                self.links.append((v, "/".join(self.stack)))

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.stack:
            self.stack.pop()

    def chars(self, data: str) -> None:
        if not self.text and data.strip():
            self.text = True


def check_div(div: str) -> tuple[list[tuple[str, str]], _Scan | None]:
    """Problems with one narrative div (severity, text), and the scan for link checks."""
    scan = _Scan()
    p = expat.ParserCreate(namespace_separator=" ")
    p.StartElementHandler = scan.start
    p.EndElementHandler = scan.end
    p.CharacterDataHandler = scan.chars
    try:
        p.Parse(_entities(div), True)
    except expat.ExpatError as exc:
        return [("error", f"The XHTML is not well formed: {expat.ErrorString(exc.code)} at line {exc.lineno}, "
                 f"column {exc.offset}")], None
    if not scan.text and "<img" not in div:
        scan.problems.append(("error", "Constraint failed: txt-2: 'The narrative SHALL have some non-whitespace "
                              "content'"))
    return scan.problems, scan


def html_ok(div) -> bool:
    return isinstance(div, str) and not any(s == "error" for s, _ in check_div(div)[0])


def check_narrative(w, div, path: str, resource: dict | None) -> None:
    if not isinstance(div, str):
        return
    problems, scan = check_div(div)
    for sev, text in problems:
        w.add(sev, "invalid" if "txt-2" not in text else "invariant", text, path)
    if scan is None or not scan.links or resource is None:
        return
    ids = {c.get("id") for c in resource.get("contained", ()) if isinstance(c, dict)} \
        if isinstance(resource.get("contained"), list) else set()
    for href, where in scan.links:
        target = href[1:]
        if target in scan.anchors or target in ids or not target:
            continue
        w.add("error", "invalid", f"Hyperlink '{href}' at '{where}' does not resolve", path)
