"""The instance walker: JSON against compiled element trees.

One walk checks what the JSON must look like (known properties, JSON types, arrays vs single
values, primitive formats, cardinality, choice types, empty values) and calls the per-node
checks compiled by the other modules (bindings, fixed/pattern, invariants, slicing, ...).

A resource is walked once against its base definition (``base=True``) and once more against
each profile (``base=False``); the profile walks skip what the base walk already covered.
"""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ..outcome import Issue
from . import checks
from .model import RESOURCE_TYPE_CODES, ElementNode, StructureModel, upper_first
from .keyplan import MANY, ONE, PRIM, PRIMS
from .primitives import PRIMITIVE_TYPES, check_primitive, check_resource_id, json_type_name

if TYPE_CHECKING:
    from .validator import Validator


_SCALARS = frozenset({str, bool, int, Decimal, float})
_NULL_IN_ARRAY = "Null values are not allowed in arrays unless the matching _ entry has content"
_SHAPES_LIMIT = 256  # property-name sequences kept per layout
# Shapes of objects with more property names than this, or longer names in all, are not kept.
_SHAPE_MAX_NAMES = 64
_SHAPE_MAX_TEXT = 1024


class Layout:
    """How the children of one (element, type) pair appear in JSON."""

    __slots__ = ("keys", "children", "type_root", "type_model", "fp", "_profile_children", "profile_set",
                 "pos", "required", "profile_required", "tables", "after", "shapes")

    def __init__(self, keys, children, type_root, type_model):
        self.keys: dict[str, tuple[ElementNode, str, bool]] = keys  # json key -> (child, type, is "_x")
        self.children: list[ElementNode] = children
        self.type_root: ElementNode | None = type_root
        self.type_model: StructureModel | None = type_model
        self.fp: dict | None = None  # FHIRPath name -> [(json key, child, type)], built on first use
        self._profile_children: list | None = None
        self.profile_set: frozenset = frozenset()
        # complex() visits the present children and the required absent ones, in this order
        self.pos = {c: i for i, c in enumerate(children)}
        self.required = [c for c in children if c.min > 0]
        self.profile_required: list = []
        # per walk kind (index: base): keyplan tables and the after-children rule plans
        self.tables: list = [None, None]
        self.after: list = [None, None]
        # per (walk kind, is a resource root): property-name sequence -> fast plan (see complex)
        self.shapes: list = [{}, {}, {}, {}]

    def table(self, validator, base: bool) -> dict:
        from . import keyplan
        if not base:
            self.profile_children(validator)
        got = self.tables[base] = keyplan.build(validator, self, base)
        return got

    def profile_children(self, validator) -> list:
        """The children a profile walk visits (see scope.py)."""
        got = self._profile_children
        if got is None:
            from .scope import relevant
            got = [c for c in self.children if relevant(validator, c)]
            self.profile_set = frozenset(got)
            self.profile_required = [c for c in got if c.min > 0]
            self._profile_children = got
        return got


def build_layout(children: list[ElementNode], type_root, type_model) -> Layout:
    keys: dict = {}
    for c in children:
        if c.choice:
            for t in c.type_codes:
                key = c.name + upper_first(t)
                keys[key] = (c, t, False)
                if t in PRIMITIVE_TYPES:
                    keys["_" + key] = (c, t, True)
        else:
            t = c.type_codes[0] if c.type_codes else ""
            if c.content_ref:
                t = ""
            keys[c.name] = (c, t, False)
            if t in PRIMITIVE_TYPES:
                keys["_" + c.name] = (c, t, True)
    return Layout(keys, children, type_root, type_model)


class Frame:
    """Where we are inside the resource being walked (for resolve(), contained refs, Bundles)."""

    __slots__ = ("resource", "path", "parent", "contained")

    def __init__(self, resource: dict, path: str, parent: "Frame | None", contained: bool = False):
        self.resource = resource
        self.path = path
        self.parent = parent
        self.contained = contained

    @property
    def root(self) -> "Frame":
        """The container of a contained resource (FHIRPath's %rootResource)."""
        f = self
        while f.contained and f.parent is not None:
            f = f.parent
        return f


class Walker:
    def __init__(self, validator: "Validator", resolver=None):
        self.v = validator
        self.resolver = resolver
        self.issues: list[Issue] = []
        self._seen: set = set()
        self.done_constraints: set = set()
        self.done_profiles: set = set()
        self._fp_context: dict | None = None
        self._fp_env = None
        self.frame: Frame | None = None
        self.model: StructureModel | None = None  # the definition currently walked (for messages)
        self.expr_envs: dict = {}  # Validator.evaluate_expression's environments (this validation)

    # -- reporting ---------------------------------------------------------------------------
    def add(self, severity: str, code: str, text: str, path: str) -> None:
        key = (severity, text, path)
        if key in self._seen:
            return
        self._seen.add(key)
        self.issues.append(Issue(severity, code, text, [path]))

    # -- resources ---------------------------------------------------------------------------
    def resource(self, obj, path: str, *, model: StructureModel | None = None, base: bool = True,
                 inner: bool = False, root: ElementNode | None = None) -> None:
        """Walk a resource. ``inner`` marks contained/bundled resources: their paths get the
        HL7 ``/*Type/id*/`` marker and their own meta.profile is honoured."""
        if not isinstance(obj, dict):
            self.add("error", "structure", f"A resource must be a JSON object, not {json_type_name(obj)}", path)
            return
        rt = obj.get("resourceType")
        if not isinstance(rt, str):
            self.add("error", "structure", "Unable to find resourceType property", path)
            return
        if model is None:
            model = self.v.type_model(rt) if self.v.definitions.is_resource_type(rt) else None
            if model is None:
                self.add("error", "structure", f"Unknown resource type '{rt}'", path + ".resourceType"
                         if not inner else path)
                return
        elif root is None and model.type != rt and model.type not in RESOURCE_TYPE_CODES:
            self.add("error", "structure", f"Found resource type {rt} but the profile {model.label} is for {model.type}",
                     path)
            return
        if inner:
            path = f"{path}/*{rt}/{obj.get('id') if isinstance(obj.get('id'), str) else 'null'}*/"
        outer_frame, outer_model, outer_ctx, outer_env = self.frame, self.model, self._fp_context, self._fp_env
        self.frame = Frame(obj, path, outer_frame, contained=".contained[" in path[len(outer_frame.path):]
                           if outer_frame else False)
        self.model = model
        self._fp_context = self._fp_env = None
        try:
            if base and "id" in obj:
                msg = check_resource_id(obj["id"])
                if msg:
                    self.add("error", "invalid", msg, self._join(path, "id"))
            if root is None:
                root = model.root
                self.complex(obj, root, rt if base else model.type, path, base, is_resource=True)
            else:
                self.complex(obj, root, rt, path, base, is_resource=True)
            self.v.resource_checks(self, obj, model, path, base)
        finally:
            self.frame, self.model, self._fp_context, self._fp_env = outer_frame, outer_model, outer_ctx, outer_env
        if inner and base:
            for prof in _meta_profiles(obj):
                self.v.walk_profile(self, obj, prof, path_in=path, unknown="warning")

    @staticmethod
    def _join(path: str, name: str) -> str:
        return path + "." + name

    # -- complex elements --------------------------------------------------------------------
    def complex(self, obj: dict, node: ElementNode, type_code: str, path: str, base: bool,
                is_resource: bool = False) -> None:
        layout = node._maps.get(type_code) or self.v.layout(node, type_code)
        # Objects of one layout mostly share their property names and order: what the first
        # loop below decides depends only on them, so it is kept per name sequence (bounded)
        shapes = layout.shapes[base + 2 * is_resource]
        names = tuple(obj)
        shape = shapes.get(names)
        if shape is None:
            shape = self._shape(node, type_code, layout, names, base, is_resource)
            # (the names are client data: an odd object's are worked out each time, not kept)
            if len(names) <= _SHAPE_MAX_NAMES and sum(map(len, names)) <= _SHAPE_MAX_TEXT:
                if len(shapes) >= _SHAPES_LIMIT:
                    shapes.clear()
                shapes[names] = shape
        plan, after = shape
        if plan:
            self._dispatch(zip(plan, obj.values()), path, base)
        else:
            self._complex_slow(obj, layout, path, base, is_resource)
        # constraints of the element and of its type, after the children (as FHIR reports them)
        for fn in after:
            fn(self, node, type_code, obj, path, layout)

    def _shape(self, node, type_code: str, layout: Layout, names: tuple, base: bool, is_resource: bool) -> tuple:
        """(fast plan, the after-children rules) for objects with these property names; the
        extension rule is left out when they have no extensions."""
        after = layout.after[base]
        if after is None:
            after = layout.after[base] = checks.object_plan(node, type_code, base, layout)
        if "extension" not in names and "modifierExtension" not in names:
            after = tuple(fn for fn in after if fn is not checks._extensions)
        return self._fast_plan(layout, names, base, is_resource), after

    def _fast_plan(self, layout: Layout, names: tuple, base: bool, is_resource: bool):
        """The key-table entry of each property (None: nothing to do), when the fast dispatch
        applies to objects with these property names; else False (the general code)."""
        table = layout.tables[base]
        if table is None:
            table = layout.table(self.v, base)
        out, last, nreq = [], -1, 0
        for key in names:
            ent = table.get(key)
            if ent is None:
                if base and not ((is_resource and key == "resourceType") or key == "fhir_comments"):
                    return False  # reported by the general code
                out.append(None)
                continue
            if ent[0] <= last:
                return False
            last = ent[0]
            nreq += ent[9]
            out.append(ent)
        if nreq < len(layout.profile_required if not base else layout.required):
            return False
        return tuple(out)

    def _complex_slow(self, obj: dict, layout: Layout, path: str, base: bool, is_resource: bool) -> None:
        table = layout.tables[base]
        ents = []
        last, ordered, nreq = -1, True, 0
        for key, val in obj.items():
            ent = table.get(key)
            if ent is None:
                # profile walks skip what the profile does not change (unknown keys: base walk)
                if base and not ((is_resource and key == "resourceType") or key == "fhir_comments"):
                    self.add("error", "structure", f"Unrecognized property '{key}'", path)
                continue
            if ent[0] <= last:
                ordered = False
            last = ent[0]
            nreq += ent[9]
            ents.append((ent, key, val))
        if not ordered or nreq < len(layout.profile_required if not base else layout.required):
            self._complex_general(ents, layout, path, base)
        else:
            self._dispatch(((ent, val) for ent, key, val in ents), path, base)

    def _dispatch(self, ents, path: str, base: bool) -> None:
        """Definition order, one property per child, no required child missing: the compiled
        table says what each value needs (see keyplan.py). ``ents``: (table entry, value)."""
        for ent, val in ents:
            if ent is None:
                continue
            kind = ent[1]
            if kind == PRIM:
                if type(val) in ent[5]:
                    chk = ent[6]
                    if chk is None or chk(val) is None:
                        plan = ent[7]
                        if plan:
                            cpath = path + ent[4]
                            child, t = ent[2], ent[3]
                            for fn in plan:
                                fn(self, child, t, val, cpath, None)
                        if ent[8]:
                            self._cardinality(ent[2], 1, path)
                        continue
            elif kind == ONE:
                if type(val) is dict and val:
                    cpath = path + ent[4]
                    child, t = ent[2], ent[3]
                    self.complex(val, child, t, cpath, base)
                    for fn in ent[7] or ():
                        fn(self, child, t, val, cpath, None)
                    if ent[8]:
                        self._cardinality(child, 1, path)
                    continue
            elif kind == MANY:
                if type(val) is list and val:
                    self._many(ent, val, path, base)
                    continue
            elif kind == PRIMS:
                if type(val) is list and val:
                    self._prims(ent, val, path, base)
                    continue
            self._visit(ent[2], [(ent[11], ent[3], ent[10], val)], path, base)

    def _many(self, ent, val: list, path: str, base: bool) -> None:
        """An array of complex values (the fast path's MANY kind)."""
        child, t, cpath, plan = ent[2], ent[3], path + ent[4], ent[7]
        n = 0
        for i, v in enumerate(val):
            ipath = f"{cpath}[{i}]"
            if type(v) is dict and v:
                n += 1
                self.complex(v, child, t, ipath, base)
                for fn in plan or ():
                    fn(self, child, t, v, ipath, None)
            elif v is None:
                self.add("error", "structure", _NULL_IN_ARRAY, ipath)
            else:
                n += 1
                self.item(child, t, v, None, ipath, base, i)
        if n > child.max or n < child.min:
            self._cardinality(child, n, path)

    def _prims(self, ent, val: list, path: str, base: bool) -> None:
        """An array of primitive values without "_x" (the fast path's PRIMS kind)."""
        child, t, cpath, ok, chk, plan = ent[2], ent[3], path + ent[4], ent[5], ent[6], ent[7]
        n = 0
        for i, v in enumerate(val):
            if type(v) in ok and (chk is None or chk(v) is None):
                n += 1
                if plan:
                    ipath = f"{cpath}[{i}]"
                    for fn in plan:
                        fn(self, child, t, v, ipath, None)
            elif v is None:
                self.add("error", "structure", _NULL_IN_ARRAY, f"{cpath}[{i}]")
            else:
                n += 1
                self.item(child, t, v, None, f"{cpath}[{i}]", base, i)
        if n > child.max or n < child.min:
            self._cardinality(child, n, path)

    def _complex_general(self, ents: list, layout: Layout, path: str, base: bool) -> None:
        """Children in definition order, "_x" siblings and choice types paired, absent required
        children reported."""
        groups: dict[ElementNode, list] = {}
        for ent, key, val in ents:
            child = ent[2]
            g = groups.get(child)
            if g is None:
                groups[child] = [(key, ent[3], ent[10], val)]
            else:
                g.append((key, ent[3], ent[10], val))
        required = layout.required if base else layout.profile_required
        # only present children and absent required ones need a visit (in definition order)
        order = list(groups)
        absent = [c for c in required if c not in groups]
        if absent or len(order) > 1:
            order += absent
            order.sort(key=layout.pos.__getitem__)
        for child in order:
            g = groups.get(child)
            if g is None:
                self._cardinality(child, 0, path)
            else:
                self._visit(child, g, path, base)

    def _visit(self, child: ElementNode, g: list, path: str, base: bool) -> None:
        """One present child: its properties as (json key, type, is "_x", value)."""
        if len(g) == 1 and not child.is_array:
            key, t, underscore, val = g[0]
            if not underscore and t in PRIMITIVE_TYPES and val is not None and type(val) in _SCALARS:
                # one primitive value, no "_x" sibling
                probs = check_primitive(t, val) if base else None
                plan = None if probs else checks.value_plan(child, t, base)
                if probs or plan:  # the path is only built when something may report
                    cpath = f"{path}.{child.name}.ofType({t})" if child.choice else path + "." + child.name
                    for sev, code, text in probs or ():
                        self.add(sev, code, text, cpath)
                    for fn in plan or ():
                        fn(self, child, t, val, cpath, None)
                if child.max < 1 or child.min > 1:
                    self._cardinality(child, 1, path)
                return
        self._child(child, g, path, base)

    def _child(self, child: ElementNode, entries: list, path: str, base: bool) -> None:
        if len(entries) == 1:  # the common case: one property, no "_x" sibling
            key, t, underscore, val = entries[0]
            cpath = f"{path}.{child.name}.ofType({t})" if child.choice else path + "." + child.name
            if underscore:
                count = self._values(child, t, None, val, False, True, cpath, key[1:], base)
            else:
                count = self._values(child, t, val, None, True, False, cpath, key, base)
            if count > child.max or count < child.min:
                self._cardinality(child, count, path)
            return
        # Pair each value with its "_x" sibling, per concrete type (choice types).
        by_type: dict[str, list] = {}
        for key, t, underscore, val in entries:
            slot = by_type.setdefault(t, [None, None, False, False, key])
            if underscore:
                slot[1], slot[3] = val, True
            else:
                slot[0], slot[2] = val, True
                slot[4] = key
        name = child.name
        if child.choice and len(by_type) > 1:
            keys = ", ".join(sorted(e[0] for e in entries if not e[2]))
            self.add("error", "structure", f"Only one value is allowed for the choice element {child.name}[x] "
                     f"(found {keys})", path)
        count = 0
        for t, (val, ext, has_val, has_ext, key) in by_type.items():
            if child.choice:
                cpath = f"{path}.{name}.ofType({t})"
            else:
                cpath = path + "." + name
            count += self._values(child, t, val, ext, has_val, has_ext, cpath, key, base)
        if (count > child.max and not (child.choice and len(by_type) > 1)) or count < child.min:
            self._cardinality(child, count, path)

    def _resource_item(self, node, val, path, base) -> None:
        _resource_item_impl(self, node, val, path, base)

    def _cardinality(self, child: ElementNode, count: int, path: str) -> None:
        label = self.model.label if self.model else child.model.label
        cpath = child.path
        if child.slice_name:
            cpath = f"{child.path}:{child.slice_name}"
        if count < child.min:
            self.add("error", "structure", f"{cpath}: minimum required = {child.min}, but only found {count} "
                     f"(from {label})", path)
        else:
            self.add("error", "structure", f"{cpath}: max allowed = {child.max}, but found {count} (from {label})",
                     path)

    def _values(self, child, t, val, ext, has_val, has_ext, cpath, key, base) -> int:
        """Check the array/single shape and walk each item; returns how many items there are."""
        is_array = child.is_array
        if is_array:
            items = self._as_array(val, has_val, key, cpath)
            exts = self._as_array(ext, has_ext, "_" + key, cpath)
            if items is None or exts is None:
                return 0
            n = max(len(items), len(exts))
            if has_val and has_ext and len(items) != len(exts):
                self.add("error", "structure", f"The arrays '{key}' and '_{key}' must have the same length", cpath)
            chosen = None
            if child.slices and not base:
                chosen = self.v.assign_slices(self, child, [items[i] if i < len(items) else exts[i]
                                                            for i in range(n)], cpath, path_of_parent(cpath, child))
            out = 0
            for i in range(n):
                v = items[i] if i < len(items) else None
                e = exts[i] if i < len(exts) else None
                ipath = f"{cpath}[{i}]"
                if v is None and e is None:
                    self.add("error", "structure", _NULL_IN_ARRAY, ipath)
                    continue
                out += 1
                self.item(chosen[i] or child if chosen else child, t, v, e, ipath, base, i)
            return out
        if val is None or ext is not None or isinstance(val, list):
            for x, present, k in ((val, has_val, key), (ext, has_ext, "_" + key)):
                if present and isinstance(x, list):
                    self.add("error", "structure", f"The property '{k}' must not be an array (it has at most "
                             f"one value)", cpath)
                    return 1
                if present and x is None:
                    self.add("error", "structure", f"The property '{k}' is null; omit it when it has no value",
                             cpath)
            if val is None and ext is None:
                return 0
        self.item(child, t, val, ext, cpath, base, None)
        return 1

    def _as_array(self, val, present, key, cpath):
        if not present:
            return []
        if not isinstance(val, list):
            self.add("error", "structure", f"The property '{key}' must be an array, not a {json_type_name(val)}", cpath)
            return None
        if not val:
            self.add("error", "invalid", "Array cannot be empty - the property should not be present if it has "
                     "no values", cpath)
            return None
        return val

    # -- one value ---------------------------------------------------------------------------
    def item(self, node: ElementNode, t: str, val, ext, path: str, base: bool, index) -> None:
        if t in PRIMITIVE_TYPES:
            if val is not None:
                if isinstance(val, (dict, list)):
                    self.add("error", "structure", f"The property must be a primitive ({t}), not "
                             f"{json_type_name(val)}", path)
                    return
                if base:
                    probs = check_primitive(t, val)
                    if probs:
                        for sev, code, text in probs:
                            self.add(sev, code, text, path)
                        return
            if ext is not None:
                if not isinstance(ext, dict):
                    self.add("error", "structure", f"The '_' property must be a JSON object, not "
                             f"{json_type_name(ext)}", path)
                elif not ext:
                    self.add("error", "structure", "Object must have some content", path)
                else:
                    self.complex(ext, self.v.primitive_element_node(t), "Element", path, base)
            checks.element(self, node, t, val, path, base, ext)
            return
        if val is None:
            self.add("error", "structure", "The property is null; omit it when it has no value", path)
            return
        if t and (t in RESOURCE_TYPE_CODES or self.v.definitions.is_resource_type(t)):
            self._resource_item(node, val, path, base)
            return
        if not isinstance(val, dict):
            self.add("error", "structure", f"The property must be a JSON object, not {json_type_name(val)}", path)
            return
        if not val:
            self.add("error", "structure", "Object must have some content", path)
            return
        if node.content_ref and not t:  # e.g. Questionnaire.item.item: defined by Questionnaire.item
            target = node.model.resolve_content_ref(node.content_ref)
            if target is not None:
                self.complex(val, target, "", path, base)
                checks.element(self, node, "", val, path, base)
            return
        if not t:
            return
        self.complex(val, node, t, path, base)
        checks.element(self, node, t, val, path, base)


def _resource_item_impl(w: "Walker", node: ElementNode, val, path: str, base: bool) -> None:
    """A resource inside an element (contained, Bundle.entry.resource, Parameters...)."""
    if not isinstance(val, dict) or not isinstance(val.get("resourceType"), str):
        if base:
            w.resource(val, path, inner=True)
        return
    rt = val["resourceType"]
    # the element's own invariants see the container as %resource
    w.v.node_invariants(w, node, val, path, rt)
    if base:
        w.resource(val, path, inner=True)
    else:
        codes = [c for c in node.type_codes if c not in RESOURCE_TYPE_CODES]
        if codes and rt not in codes:
            w.add("error", "structure", f"The resource type {rt} is not allowed here (allowed: {', '.join(codes)})",
                  path)
        if node.children:
            w.resource(val, path, model=node.model, base=False, inner=True, root=node)
    checks.element(w, node, rt, val, path, base)


def path_of_parent(cpath: str, child: ElementNode) -> str:
    """The parent's path, for messages reported on the containing element."""
    suffix = "." + child.name
    i = cpath.rfind(suffix)
    return cpath[:i] if i > 0 else cpath


def _meta_profiles(obj: dict) -> list[str]:
    meta = obj.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("profile"), list):
        return [p for p in meta["profile"] if isinstance(p, str)]
    return []


__all__ = ["Walker", "Layout", "build_layout", "Frame"]
