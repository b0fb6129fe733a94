"""The Validator: compiled definitions (cached per Definitions) and the validation entry point."""
from __future__ import annotations

import threading

from ..definitions import Definitions
from ..outcome import Issue
from .model import RESOURCE_TYPE_CODES, ElementNode, StructureModel
from .primitives import PRIMITIVE_TYPES
from .structure import Layout, Walker, _meta_profiles, build_layout
from . import checks

_SKIP_TYPE_ROOTS = frozenset({"Element", "BackboneElement", "Resource", "DomainResource", ""})


class Validator:
    """Compiles StructureDefinitions on first use and validates resources against them."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self._models: dict[str, tuple[dict, StructureModel]] = {}
        self._lock = threading.RLock()
        self._element_nodes: dict[str, ElementNode] = {}
        self.cache: dict = {}  # scratch space for compiled checks (ValueSets, FHIRPath, ...)

    @classmethod
    def for_definitions(cls, definitions: Definitions) -> "Validator":
        v = definitions.__dict__.get("_validator")
        if v is None:
            v = definitions.__dict__["_validator"] = cls(definitions)
        return v

    # -- compiled definitions ---------------------------------------------------------------
    def model(self, url: str, resolver=None) -> StructureModel | None:
        """The compiled StructureDefinition for a canonical URL (generating its snapshot)."""
        sd = self.definitions.get(url)
        if (sd is None or sd.get("resourceType") != "StructureDefinition") and resolver is not None:
            try:
                sd = resolver(url)
            except Exception:
                sd = None
        if not sd or sd.get("resourceType") != "StructureDefinition":
            return None
        hit = self._models.get(url)
        if hit is not None and hit[0] is sd:
            return hit[1]
        with self._lock:
            if not sd.get("snapshot", {}).get("element"):
                from ..definitions.snapshot import generate_snapshot
                try:
                    snap = generate_snapshot(sd, self.definitions)
                except Exception:
                    snap = None
                if not snap:
                    return None
                sd_use = dict(sd, snapshot={"element": snap})
            else:
                sd_use = sd
            m = StructureModel(sd_use)
            if m.root is None:
                return None
            self._models[url] = (sd, m)
            return m

    def type_model(self, type_code: str) -> StructureModel | None:
        hit = self._models.get(type_code)
        if hit is not None:
            return hit[1]
        if type_code.startswith("http"):
            return self.model(type_code)
        m = self.model("http://hl7.org/fhir/StructureDefinition/" + type_code)
        if m is not None:
            self._models[type_code] = (None, m)
        return m

    def primitive_element_node(self, type_code: str) -> ElementNode:
        """The node whose children (id, extension) describe a primitive's ``_x`` object."""
        m = self.type_model(type_code)
        return m.root

    def layout(self, node: ElementNode, type_code: str) -> Layout:
        lay = node._maps.get(type_code)
        if lay is not None:
            return lay
        if type_code == "Element":  # the "_x" object of a primitive
            children = [c for c in node.children if c.name != "value"]
            lay = build_layout(children, None, None)
        else:
            children = node.children
            source = node
            if not children and node.choice and node.slices:
                for s in node.slices:
                    if s.slice_name in (node.name + type_code[:1].upper() + type_code[1:], type_code) and s.children:
                        children, source = s.children, s
                        break
            tm = None
            if type_code and type_code not in _SKIP_TYPE_ROOTS and type_code not in PRIMITIVE_TYPES \
                    and node.model.root is not node:
                tm = self.type_model(type_code)
            if not children and node.content_ref:
                target = node.model.resolve_content_ref(node.content_ref)
                children = target.children if target else []
            if not children and tm is not None:
                children = tm.root.children
            lay = build_layout(children, tm.root if tm else None, tm)
        node._maps[type_code] = lay
        return lay

    # -- hooks called by the walker ----------------------------------------------------------
    def node_checks(self, w: Walker, node, type_code, obj, path, base, layout) -> None:
        checks.after_children(w, node, type_code, obj, path, base, layout)

    def element_checks(self, w: Walker, node, type_code, val, path, base, ext=None) -> None:
        checks.element(w, node, type_code, val, path, base, ext)

    def slice_checks(self, w: Walker, node, type_code, items, path, base) -> None:
        checks.slices(w, node, type_code, items, path, base)

    def resource_checks(self, w: Walker, obj, model, path, base) -> None:
        checks.resource(w, obj, model, path, base)

    def walk_profile(self, w: Walker, obj: dict, url: str, *, path_in: str, unknown: str) -> None:
        model = self.model(url, w.resolver)
        if model is None:
            sev = "error" if unknown == "error" else "warning"
            w.add(sev, "not-found" if sev == "error" else "informational",
                  f"Profile reference '{url}' has not been checked because it is unknown", path_in + ".meta.profile"
                  if not path_in.endswith("*/") else path_in)
            return
        if model.kind == "resource" or model.type in RESOURCE_TYPE_CODES or model.type == obj.get("resourceType"):
            w.resource(obj, path_in, model=model, base=False)
        else:
            w.add("error", "structure", f"The profile {model.label} is not a resource profile", path_in)

    # -- entry point -------------------------------------------------------------------------
    def validate(self, resource, *, profiles=(), resolver=None, unknown_profile: str = "warning") -> list[Issue]:
        w = Walker(self, resolver)
        if not isinstance(resource, dict):
            w.add("fatal", "structure", "The content is not a JSON object", "")
            return w.issues
        rt = resource.get("resourceType")
        path = rt if isinstance(rt, str) and self.definitions.is_resource_type(rt) else "Resource"
        w.resource(resource, path)
        if w.issues and any(i.severity == "fatal" for i in w.issues):
            return w.issues
        if path == "Resource":
            return w.issues
        seen = set()
        for url in list(_meta_profiles(resource)) + [p for p in profiles if p]:
            if url in seen:
                continue
            seen.add(url)
            self.walk_profile(w, resource, url, path_in=path, unknown=unknown_profile)
        return w.issues
