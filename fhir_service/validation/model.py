"""StructureDefinition snapshots compiled once into trees of element nodes.

Each node knows its cardinality, its types and, lazily, a map from the JSON property names an
instance may use (``valueQuantity``, ``_birthDate``, ...) to the child node that defines them.
Children come from the snapshot when it lists them (profiles constrain inside datatypes),
otherwise from the type's own StructureDefinition, so each datatype is compiled only once.
"""
from __future__ import annotations

from typing import NamedTuple

from .primitives import PRIMITIVE_TYPES, SYSTEM_TYPES

INF = 1 << 30
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
RESOURCE_TYPE_CODES = frozenset({"Resource", "DomainResource"})


class TypeRef(NamedTuple):
    code: str
    profiles: tuple[str, ...]
    target_profiles: tuple[str, ...]


def _type_code(t: dict) -> str:
    code = t.get("code", "")
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", ()):
            if ext.get("url") == FHIR_TYPE_EXT:
                return ext.get("valueUrl") or ext.get("valueUri") or SYSTEM_TYPES.get(code, "string")
        return SYSTEM_TYPES.get(code, "string")
    return code


def upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


class ElementNode:
    """One ElementDefinition of a compiled snapshot."""

    __slots__ = ("model", "ed", "id", "path", "name", "choice", "min", "max", "types", "type_codes",
                 "content_ref", "children", "slicing", "slices", "slice_name", "_maps", "extras", "is_array")

    def __init__(self, model: "StructureModel", ed: dict):
        self.model = model
        self.ed = ed
        self.id = ed.get("id") or ed["path"]
        self.path = ed["path"]
        last = self.path.rsplit(".", 1)[-1]
        self.choice = last.endswith("[x]")
        self.name = last[:-3] if self.choice else last
        self.min = ed.get("min", 0) or 0
        mx = ed.get("max", "*")
        self.max = INF if mx == "*" else int(mx)
        self.types = tuple(TypeRef(_type_code(t), tuple(t.get("profile", ())), tuple(t.get("targetProfile", ())))
                           for t in ed.get("type", ()))
        self.type_codes = tuple(dict.fromkeys(t.code for t in self.types))
        self.content_ref = ed.get("contentReference")
        self.children: list[ElementNode] = []
        self.slicing = ed.get("slicing")
        self.slices: list[ElementNode] = []
        self.slice_name = ed.get("sliceName")
        self._maps: dict = {}
        self.extras: dict = {}  # per-node compiled checks, filled by other modules
        # The JSON form is an array when the base definition repeats (whatever a profile says).
        base = ed.get("base")
        bmax = base.get("max", "*") if base else ed.get("max", "*")
        self.is_array = bmax != "1" and bmax != "0"

    def __repr__(self) -> str:
        return f"<ElementNode {self.id}>"

    def child(self, name: str) -> "ElementNode | None":
        for c in self.children:
            if c.name == name:
                return c
        return None


class StructureModel:
    """A compiled StructureDefinition."""

    def __init__(self, sd: dict):
        self.sd = sd
        self.url = sd.get("url", "")
        self.version = sd.get("version")
        self.type = sd.get("type", "")
        self.kind = sd.get("kind")
        self.name = sd.get("name", self.type)
        self.derivation = sd.get("derivation")
        self.label = f"{self.url}|{self.version}" if self.version else self.url
        elements = sd.get("snapshot", {}).get("element", [])
        self.nodes: dict[str, ElementNode] = {}
        self.by_path: dict[str, ElementNode] = {}
        self.root: ElementNode | None = None
        for ed in elements:
            self._place(ElementNode(self, ed))

    def _place(self, node: ElementNode) -> None:
        nid = node.id
        self.nodes[nid] = node
        if self.root is None:
            self.root = node
            self.by_path.setdefault(node.path, node)
            return
        last = nid.rsplit(".", 1)[-1] if "." in nid else nid
        parent_id = nid[: len(nid) - len(last) - 1]
        if ":" in last and "." in nid:
            name = last.split(":", 1)[0]
            slice_part = last.split(":", 1)[1]
            base_id = parent_id + "." + name
            if "/" in slice_part:  # re-slice: a slice of the named slice
                base_id += ":" + slice_part.rsplit("/", 1)[0]
            base = self.nodes.get(base_id)
            if base is not None:
                base.slices.append(node)
                return
        elif ":" in last and "." not in nid:
            return  # a slice of the root element: not meaningful for instances
        parent = self.nodes.get(parent_id)
        if parent is None:
            # ids out of step with paths (hand-written snapshots): fall back to the path.
            parent = self.by_path.get(node.path.rsplit(".", 1)[0])
        if parent is not None:
            parent.children.append(node)
        self.by_path.setdefault(node.path, node)

    def resolve_content_ref(self, ref: str) -> ElementNode | None:
        # "#Questionnaire.item" (R4) or "http://...#Questionnaire.item"
        key = ref.split("#", 1)[-1]
        return self.nodes.get(key) or self.by_path.get(key)


def is_primitive(code: str) -> bool:
    return code in PRIMITIVE_TYPES
