"""The Validator: compiled definitions (cached per Definitions) and the validation entry point."""
from __future__ import annotations

import logging
import threading

from ..definitions import Definitions
from ..outcome import Issue
from .model import RESOURCE_TYPE_CODES, ElementNode, StructureModel
from .primitives import PRIMITIVE_TYPES
from .structure import Layout, Walker, _meta_profiles, build_layout
from . import checks, references, slicing

_log = logging.getLogger(__name__)
_SKIP_TYPE_ROOTS = frozenset({"Element", "BackboneElement", "Resource", "DomainResource", ""})


def _stamp(res: dict):
    """What identifies one version of a server-stored resource."""
    meta = res.get("meta") if isinstance(res.get("meta"), dict) else {}
    if meta.get("versionId") or meta.get("lastUpdated"):
        return (res.get("url"), res.get("version"), meta.get("versionId"), meta.get("lastUpdated"))
    from .. import jsonutil
    return hash(jsonutil.dumps(res))


class Validator:
    """Compiles StructureDefinitions on first use and validates resources against them."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self._models: dict[str, tuple] = {}  # url -> (source or stamp, model, generation)
        self._types: dict[str, StructureModel] = {}  # core types by name
        self._lock = threading.RLock()
        self._element_nodes: dict[str, ElementNode] = {}
        self.cache: dict = {}
        self._subtypes: dict = {}
        # Extension URL prefixes whose unknown extensions are warnings rather than errors.
        self.allowed_extension_domains: tuple[str, ...] = ()
        self._add_dependency_definitions()

    def _add_dependency_definitions(self) -> None:
        """Definitions from guides we depend on but cannot fetch offline (see data/README.md)."""
        from pathlib import Path

        from .. import jsonutil
        for f in sorted((Path(__file__).parent / "data").glob("*.json")):
            bundle = jsonutil.loads(f.read_bytes())
            for e in bundle.get("entry", ()):
                res = e.get("resource")
                if isinstance(res, dict) and res.get("url") and self.definitions.get(res["url"]) is None:
                    self.definitions.add(res)  # scratch space for compiled checks (ValueSets, FHIRPath, ...)

    @classmethod
    def for_definitions(cls, definitions: Definitions) -> "Validator":
        v = definitions.__dict__.get("_validator")
        if v is None:
            v = definitions.__dict__["_validator"] = cls(definitions)
        return v

    # -- compiled definitions ---------------------------------------------------------------
    def model(self, url: str, resolver=None) -> StructureModel | None:
        """The compiled StructureDefinition for a canonical URL (generating its snapshot).

        Definitions held by the registry are re-checked only when it changes (its generation);
        ones from the server's resolver are keyed by their version stamp, since the resolver
        may hand back a new object for the same content every time.
        """
        gen = self.definitions.generation
        hit = self._models.get(url)
        if hit is not None and hit[2] == gen and hit[0] is not None:
            return hit[1]
        sd = self.definitions.get(url)
        from_resolver = False
        if (sd is None or sd.get("resourceType") != "StructureDefinition") and resolver is not None:
            try:
                sd = resolver(url)
            except Exception:
                sd = None
            from_resolver = True
        if not sd or sd.get("resourceType") != "StructureDefinition":
            return None
        stamp = _stamp(sd) if from_resolver else sd
        if hit is not None and (hit[0] is stamp or (from_resolver and hit[0] == stamp)):
            self._models[url] = (hit[0], hit[1], gen if not from_resolver else -1)
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
            self._models[url] = (stamp, m, gen if not from_resolver else -1)
            return m

    def type_model(self, type_code: str) -> StructureModel | None:
        if not isinstance(type_code, str):
            return None
        m = self._types.get(type_code)
        if m is not None:
            return m
        if type_code.startswith("http"):
            return self.model(type_code)
        m = self.model("http://hl7.org/fhir/StructureDefinition/" + type_code)
        if m is not None:
            self._types[type_code] = m
        return m

    def is_subtype(self, type_code: str, ancestor: str) -> bool:
        """Whether ``type_code`` is ``ancestor`` or specialises it (Age is a Quantity, ...)."""
        if not isinstance(type_code, str) or not isinstance(ancestor, str):
            return False
        key = (type_code, ancestor)
        hit = self._subtypes.get(key)
        if hit is None:
            hit = False
            seen = 0
            t = type_code
            while t and seen < 20:
                if t == ancestor:
                    hit = True
                    break
                m = self.type_model(t)
                base = m.sd.get("baseDefinition", "") if m is not None else ""
                t = base.rsplit("/", 1)[-1] if base.startswith("http://hl7.org/fhir/StructureDefinition/") else ""
                seen += 1
            self._subtypes[key] = hit
        return hit

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
    def node_invariants(self, w: Walker, node, val, path, type_code) -> None:
        from . import invariants
        invariants.evaluate(w, node, val, path, type_code)

    def assign_slices(self, w: Walker, node, items, path, parent_path) -> list:
        return slicing.assign(w, node, items, path, parent_path)

    def resolve_reference(self, w: Walker, ref: str):
        return references.resolve_in(w, w.frame, ref) if w.frame is not None else None

    def walk_element_profile(self, w: Walker, val, model: StructureModel, type_code: str, path: str) -> None:
        """Walk a datatype value (an extension, a Quantity, ...) against a profile of its type."""
        if not isinstance(val, dict) or model.root is None:
            return
        key = (id(val), model.url, path)
        if key in w.done_profiles:
            return
        w.done_profiles.add(key)
        outer = w.model
        w.model = model
        try:
            w.complex(val, model.root, type_code, path, False)
        finally:
            w.model = outer

    def walk_type_profiles(self, w: Walker, val, type_code: str, profiles, path: str) -> None:
        """``type.profile``: the value must conform to one of the listed profiles."""
        if type_code == "Extension" and isinstance(val, dict) and val.get("url") in profiles:
            return  # extensions are walked against their own definition already
        for url in profiles:
            model = self.model(url, w.resolver)
            if model is None:
                w.add("error", "structure", f"Unable to resolve the profile reference '{url}'", path)
                continue
            if isinstance(val, dict) and "resourceType" in val:
                inner = f"{path}/*{val.get('resourceType')}/{val.get('id') if isinstance(val.get('id'), str) else 'null'}*/"
                key = (id(val), model.url, inner)
                if key not in w.done_profiles:
                    w.done_profiles.add(key)
                    w.resource(val, path, model=model, base=False, inner=True)
            else:
                self.walk_element_profile(w, val, model, type_code, path)
            if len(profiles) > 1:
                break  # several profiles are alternatives: checking the first is the best we can do cheaply

    def conforms(self, w: Walker, val, url: str) -> bool | None:
        """Whether a value (or resource) has no errors against a profile (None: profile unknown)."""
        model = self.model(url, w.resolver)
        if model is None:
            return None
        if not isinstance(val, dict):
            return False
        sub = Walker(self, w.resolver)
        sub.frame = w.frame
        if "resourceType" in val:
            sub.resource(val, "x", model=model, base=False)
        else:
            sub.model = model
            sub.complex(val, model.root, model.type, "x", False)
        return not any(i.is_error for i in sub.issues)


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

    def fhirpath_context(self, w: Walker) -> dict:
        """Variables and hooks for FHIRPath invariants, once per resource walked."""
        ctx = w._fp_context
        if ctx is None:
            frame = w.frame
            ctx = w._fp_context = {
                "resource": frame.resource,
                "rootResource": frame.root.resource,
                "__resolve": lambda ref, _f=frame: references.resolve_in(w, _f, ref),
            }
        return ctx

    def fp_env(self, w: Walker):
        """The compiled-FHIRPath environment for the resource being walked (once per resource)."""
        env = w._fp_env
        if env is None:
            from .fp_compiler import Env
            from .fp_values import Item
            frame = w.frame
            res, root = frame.resource, frame.root.resource
            rt = res.get("resourceType", "")
            res_item = Item(res, None, rt)
            root_item = res_item if root is res else Item(root, None, root.get("resourceType", ""))
            env = w._fp_env = Env(self, {"resource": [res_item], "rootResource": [root_item]},
                                  resolve=lambda ref, _f=frame: references.resolve_in(w, _f, ref),
                                  member_of=lambda value, url: self._member_of(w, value, url),
                                  conforms_to=lambda value, url: bool(self.conforms(w, value, url)))
        return env

    def _member_of(self, w: Walker, value, url: str) -> bool | None:
        """FHIRPath memberOf(): a code, Coding or CodeableConcept in a ValueSet (None: unknown)."""
        from ..terminology import Terminology
        vs = Terminology.for_definitions(self.definitions).value_set(url, w.resolver)
        if vs is None:
            return None
        if isinstance(value, str):
            return vs.contains(None, value)
        if not isinstance(value, dict):
            return False
        codings = value.get("coding") if isinstance(value.get("coding"), list) else [value]
        results = [vs.contains(c.get("system"), c["code"]) for c in codings
                   if isinstance(c, dict) and isinstance(c.get("code"), str)]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False

    def evaluate_expression(self, w: Walker, expression: str, resource: dict, variables: dict | None = None):
        """A FHIRPath expression on a resource (SDC expressions): plain values, or None on failure."""
        from .fp_compiler import Env, compile_expression, evaluate
        from .fp_values import Item
        # one Env per (resource, variables) for the whole validation: it keeps the results of
        # subexpressions that depend only on them (%resource.repeat(item), ...)
        key = (id(resource),) + tuple((k, id(v)) for k, v in (variables or {}).items())
        hit = w.expr_envs.get(key) if w is not None else None
        if hit is None:
            root = Item(resource, None, resource.get("resourceType"))
            env_vars = {"resource": [root], "rootResource": [root]}
            for k, v in (variables or {}).items():
                env_vars[k] = [Item(v, None, v.get("resourceType") if isinstance(v, dict) else None)]
            hit = (resource, variables, root, Env(self, env_vars))  # (the objects stay alive: ids stay theirs)
            if w is not None:
                w.expr_envs[key] = hit
        root, env = hit[2], hit[3]
        try:
            fn = compile_expression(expression)
        except Exception:
            fn = None
        if fn is not None:
            try:
                return [i.v for i in evaluate(fn, env, root)]
            except Exception:
                return None
        from .. import fhirpath
        try:
            return fhirpath.evaluate(resource, expression, dict({"resource": resource}, **(variables or {})))
        except Exception:
            return None

    # -- entry point -------------------------------------------------------------------------
    def validate(self, resource, *, profiles=(), resolver=None, unknown_profile: str = "warning") -> list[Issue]:
        w = Walker(self, resolver)
        if not isinstance(resource, dict):
            w.add("fatal", "structure", "The content is not a JSON object", "")
            return w.issues
        rt = resource.get("resourceType")
        path = rt if isinstance(rt, str) and self.definitions.is_resource_type(rt) else "Resource"
        try:
            w.resource(resource, path)
            if path == "Resource" or any(i.severity == "fatal" for i in w.issues):
                return w.issues
            seen = set()
            for url in list(_meta_profiles(resource)) + [p for p in profiles if p]:
                if url in seen:
                    continue
                seen.add(url)
                self.walk_profile(w, resource, url, path_in=path, unknown=unknown_profile)
        except Exception as exc:  # a validator defect must never turn client input into a 500
            _log.warning("validation stopped early: %s", type(exc).__name__, exc_info=True)
            w.add("warning", "exception", f"Validation could not be completed ({type(exc).__name__}); the issues "
                  "above were found before it stopped", path)
        return w.issues
