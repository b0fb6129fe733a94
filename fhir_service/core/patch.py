"""The two PATCH body formats (http.html#patch): JSON Patch (RFC 6902) and FHIRPath Patch
(fhirpatch.html, a Parameters resource of ``operation`` parameters).

Both functions return a patched copy and never change their input. Errors are FHIRErrors:
400 when the patch document itself is malformed, 422 when it is well formed but cannot be
applied to this resource.
"""
from __future__ import annotations

import copy
import functools
import re
from typing import Any, NamedTuple

import fhirpathpy
import jsonpatch
import jsonpointer

from ..definitions.registry import get_definitions
from ..fhirpath import _FUNCTIONS, R4_MODEL
from ..outcome import FHIRError, error


# -- JSON Patch ------------------------------------------------------------------------------

def apply_json_patch(resource: dict, operations: Any) -> dict:
    if not isinstance(operations, list):
        raise error(400, "invalid", "A JSON Patch body must be an array of operations")
    doc = copy.deepcopy(resource)
    # One operation at a time, so that an error can say which one failed.
    for i, op in enumerate(copy.deepcopy(operations)):
        where = f"JSON Patch operation {i}"
        if not isinstance(op, dict):
            raise error(400, "invalid", f"{where} is not an object")
        try:
            patch = jsonpatch.JsonPatch([op])
            if "from" in op:  # jsonpatch reads `from` only when it applies the operation
                jsonpointer.JsonPointer(op["from"])
        except (jsonpatch.InvalidJsonPatch, jsonpointer.JsonPointerException, TypeError, AttributeError) as exc:
            raise error(400, "invalid", f"{where} is malformed: {exc}") from None
        try:
            doc = patch.apply(doc, in_place=True)
        except jsonpatch.InvalidJsonPatch as exc:  # e.g. no `value`, found only when applied
            raise error(400, "invalid", f"{where} is malformed: {exc}") from None
        except jsonpatch.JsonPatchTestFailed as exc:
            raise error(422, "processing", f"{where} (test {op.get('path')}) failed: {exc}") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise error(422, "processing",
                        f"{where} ({op.get('op')} {op.get('path')}) cannot be applied: {exc}") from None
    _check_identity(resource, doc)
    return doc


def _check_identity(before: dict, after: Any) -> None:
    """A patch edits a resource; it may not turn it into another one."""
    if not isinstance(after, dict):
        raise error(422, "processing", "The patched content is not a resource")
    for key in ("resourceType", "id"):
        if after.get(key) != before.get(key):
            raise error(422, "processing", f"A patch must not change the resource's {key}",
                        f"{before.get('resourceType')}.{key}")


# -- FHIRPath Patch --------------------------------------------------------------------------

# The parts each operation type needs besides `type`.
_NEEDS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_PARTS = {"type", "path", "name", "value", "index", "source", "destination"}
_VALUE_X = re.compile(r"value[A-Z]\w*")
_STEP = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?")
_LAST_NAME = re.compile(r"(?:(.+)\.)?([A-Za-z][A-Za-z0-9]*)")
_MISSING = object()


def apply_fhirpath_patch(resource: dict, parameters: dict) -> dict:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise error(400, "invalid", "A FHIRPath Patch body must be a Parameters resource")
    params = parameters.get("parameter", [])
    if not isinstance(params, list):
        raise error(400, "invalid", "Parameters.parameter must be an array", "Parameters.parameter")
    doc = copy.deepcopy(resource)
    # Read them all first: a malformed document is refused before anything is applied.
    ops = [_Operation(p, f"Parameters.parameter[{i}]") for i, p in enumerate(params)]
    for op in ops:
        _APPLY[op.type](doc, op)
    _check_identity(resource, doc)
    return doc


class _Operation:
    """One ``operation`` parameter, checked for form (not yet against the resource)."""

    def __init__(self, param: Any, where: str):
        self.where, self.type = where, None
        if not isinstance(param, dict) or param.get("name") != "operation":
            raise self.bad("each parameter must be named 'operation'")
        parts: dict[str, dict] = {}
        for part in param.get("part") or []:
            name = part.get("name") if isinstance(part, dict) else None
            if name not in _PARTS or name in parts:
                raise self.bad(f"unknown or repeated part {name!r}")
            parts[name] = part
        kind = _primitive(parts.get("type"))
        if kind not in _NEEDS:
            raise self.bad(f"type must be one of {', '.join(_NEEDS)}, not {kind!r}")
        self.type = kind
        missing = [p for p in _NEEDS[kind] if p not in parts]
        if missing:
            raise self.bad(f"missing part {', '.join(missing)}")
        self.path = self._read(parts, "path", str)
        self.name = self._read(parts, "name", str)
        self.index, self.source, self.destination = (
            self._read(parts, n, int) for n in ("index", "source", "destination"))
        self.value_part = parts.get("value")
        # The type a value[x] names (valueQuantity -> Quantity) picks a choice element's name.
        self.suffix = _suffix(self.value_part)

    def _read(self, parts: dict, name: str, kind: type) -> Any:
        if name not in parts:
            return None
        value = _primitive(parts[name])
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise self.bad(f"part '{name}' must have a {'string' if kind is str else 'integer'} value")
        return value

    def bad(self, text: str) -> FHIRError:
        """The patch document is malformed (400)."""
        label = f"{self.where} ({self.type})" if self.type else self.where
        return error(400, "invalid", f"{label}: {text}", self.where)

    def fail(self, text: str) -> FHIRError:
        """The operation cannot be applied to this resource (422)."""
        return error(422, "processing", f"{self.where} ({self.type}): {text}", self.where)

    def value(self, type_path: str | None) -> Any:
        return _build(self.value_part, type_path, self)


def _primitive(part: dict | None) -> Any:
    return next((v for k, v in part.items() if _VALUE_X.fullmatch(k)), None) if part else None


def _suffix(part: dict | None) -> str | None:
    return next((k[5:] for k in part if _VALUE_X.fullmatch(k)), None) if part else None


def _build(part: dict, type_path: str | None, op: _Operation) -> Any:
    """A part's value as JSON: value[x] or resource as given; nested parts become an object of
    type ``type_path`` (so that a repeating element is a list even when given once)."""
    for key, value in part.items():
        if _VALUE_X.fullmatch(key):
            return copy.deepcopy(value)
    if isinstance(part.get("resource"), dict):
        return copy.deepcopy(part["resource"])
    subparts = part.get("part")
    if not isinstance(subparts, list) or not subparts:
        raise op.bad(f"part {part.get('name')!r} has no value[x], resource or part")
    obj: dict = {}
    for sub in subparts:
        name = sub.get("name") if isinstance(sub, dict) else None
        if not isinstance(name, str) or not name:
            raise op.bad(f"a part inside {part.get('name')!r} has no name")
        key, repeats, child = _element(type_path, name, _suffix(sub), op)
        value = _build(sub, child, op)
        if repeats or key in obj:  # without definitions (repeats None) a repeated name makes a list
            if repeats is False:
                raise op.bad(f"{key!r} is given more than once but does not repeat")
            old = obj.get(key, [])
            obj[key] = (old if isinstance(old, list) else [old]) + [value]
        else:
            obj[key] = value
    return obj


# -- finding what a path selects --

@functools.lru_cache(maxsize=1024)
def _compile(expression: str):
    # fhir_service.fhirpath.evaluate returns copies. Raw fhirpathpy nodes carry each result's
    # indexed path (propName, e.g. "Patient.name[0].given[1]"), which finds it in our copy.
    return fhirpathpy.compile(expression, model=R4_MODEL,
                              options={"userInvocationTable": _FUNCTIONS, "returnRawData": True})


class _Hit(NamedTuple):
    value: Any  # the selected element, as it is in the document being patched
    chain: list  # [(container, key), ...] from the resource down to it
    type: str | None  # its type path: "HumanName", "Patient", "Patient.contact", ...
    name: str | None  # its element name without a choice suffix ("value" for valueString)


def _select(doc: dict, path: str, op: _Operation) -> list[_Hit]:
    try:
        nodes = _compile(path)(doc, {})
    except Exception as exc:  # fhirpathpy reports bad syntax only when it evaluates
        raise op.bad(f"cannot evaluate path {path!r}: {exc}") from None
    return [_locate(doc, node, path, op) for node in nodes]


def _locate(doc: dict, node: Any, path: str, op: _Operation) -> _Hit:
    chain, value, name = [], doc, None
    prop = getattr(node, "propName", None)
    try:
        for step in (prop.split(".")[1:] if prop else []):  # [0] is the resource type
            name, index = _STEP.fullmatch(step).groups()
            key = _stored_key(value, name)
            chain.append((value, key))
            value = value[key]
            if index is not None:
                chain.append((value, int(index)))
                value = value[int(index)]
    except (AttributeError, LookupError, TypeError):
        value = _MISSING
    # Identity, not equality: a literal or a resolve() stand-in is not part of this resource.
    if value is not getattr(node, "data", node):
        raise op.fail(f"path {path!r} selects something that is not an element of this resource")
    return _Hit(value, chain, getattr(node, "path", None), name)


def _stored_key(obj: dict, name: str) -> str | None:
    """The key element ``name`` has in ``obj``: a choice element is navigated as "value" but
    stored as "valueString"."""
    if name in obj:
        return name
    return next((k for k in obj if k.startswith(name) and k[len(name):][:1].isupper()), None)


def _one(doc: dict, path: str, op: _Operation) -> _Hit:
    hits = _select(doc, path, op)
    if len(hits) != 1:
        raise op.fail(f"path {path!r} matches {len(hits)} elements; it must match exactly one")
    return hits[0]


def _list(doc: dict, op: _Operation) -> tuple[dict, str, list, str | None]:
    """For insert and move: (owner, key, list, item type) of the list the path names. The
    path is split at its last name, as an empty list selects nothing that could be located."""
    m = _LAST_NAME.fullmatch(op.path.strip())
    if not m:
        raise op.bad(f"path {op.path!r} must end with the name of a repeating element")
    owner_path, name = m.groups()
    owner = _one(doc, owner_path or str(doc.get("resourceType")), op)
    if not isinstance(owner.value, dict):
        raise op.fail(f"path {owner_path!r} does not select an element with children")
    key, repeats, item_type = _element(owner.type, name, None, op)
    items = owner.value.get(key, [])
    if repeats is False or not isinstance(items, list):
        raise op.fail(f"{key!r} is not a list")
    return owner.value, key, items, item_type


# -- element definitions --

@functools.lru_cache(maxsize=512)
def _elements(type_name: str) -> dict[str, tuple[bool, str | None]] | None:
    """Element path -> (repeats, type path of its content), from the core StructureDefinition;
    None when the definitions are not available (then cardinality goes unchecked)."""
    try:
        sd = get_definitions(fetch=False).structure_definition(type_name)
    except (RuntimeError, OSError):
        return None
    if not sd:
        return None
    table = {}
    for el in sd.get("snapshot", {}).get("element", []):
        path, repeats = el["path"], el.get("max") not in ("0", "1")
        codes = [t.get("code") for t in el.get("type", [])]
        if el.get("contentReference"):  # Questionnaire.item.item is another Questionnaire.item
            table[path] = (repeats, el["contentReference"].split("#")[-1])
        elif path.endswith("[x]"):
            for code in codes:
                table[path[:-3] + code[:1].upper() + code[1:]] = (repeats, code)
        else:
            inline = codes in (["BackboneElement"], ["Element"])
            table[path] = (repeats, path if inline else (codes[0] if codes else None))
    return table


def _element(type_path: str | None, name: str, suffix: str | None,
             op: _Operation) -> tuple[str, bool | None, str | None]:
    """(JSON key, repeats, content type path) of element ``name`` of ``type_path``; the key
    of a choice element takes the value's type (``value`` + ``Quantity``)."""
    table = _elements(type_path.split(".")[0]) if type_path else None
    if table is None:
        return name, None, None
    for key in (name, name + (suffix or "")):
        if f"{type_path}.{key}" in table:
            return (key, *table[f"{type_path}.{key}"])
    raise op.fail(f"{type_path} has no element {name!r}" + (f" of type {suffix}" if suffix else ""))


# -- the operations --

def _add(doc: dict, op: _Operation) -> None:
    target = _one(doc, op.path, op)
    if not isinstance(target.value, dict):
        raise op.fail(f"path {op.path!r} does not select an element with children")
    key, repeats, child = _element(target.type, op.name, op.suffix, op)
    value = op.value(child)
    # A choice element holds one type at a time: deceasedBoolean blocks adding deceasedDateTime.
    existing = target.value.get(_stored_key(target.value, op.name) if key != op.name else key)
    if isinstance(existing, list) or (repeats and existing is None):
        target.value.setdefault(key, []).append(value)
    elif existing is not None:  # the spec allows add for a single element only while absent
        raise op.fail(f"{key!r} already has a value (use replace)")
    else:
        target.value[key] = value


def _insert(doc: dict, op: _Operation) -> None:
    owner, key, items, item_type = _list(doc, op)
    if not 0 <= op.index <= len(items):
        raise op.fail(f"index {op.index} is out of range: {key!r} has {len(items)} items")
    items.insert(op.index, op.value(item_type))
    owner[key] = items
    shadow = owner.get("_" + key)  # keep a primitive list's id/extension list in step
    if isinstance(shadow, list):
        shadow.insert(op.index, None)


def _delete(doc: dict, op: _Operation) -> None:
    hits = _select(doc, op.path, op)
    if not hits:
        return  # deleting what is not there is not an error
    if len(hits) > 1:
        raise op.fail(f"path {op.path!r} matches {len(hits)} elements; only one can be deleted")
    chain = hits[0].chain
    if not chain:
        raise op.fail("cannot delete the resource itself")
    while chain:
        container, key = chain.pop()
        del container[key]
        if isinstance(container, dict):
            container.pop("_" + key, None)  # a primitive's id/extensions go with it
        else:
            owner, name = chain[-1]
            shadow = owner.get("_" + name)
            if isinstance(shadow, list) and key < len(shadow):
                del shadow[key]
        if container:
            break  # JSON FHIR has no empty arrays or objects: remove what this emptied


def _replace(doc: dict, op: _Operation) -> None:
    hit = _one(doc, op.path, op)
    if not hit.chain:
        raise op.fail("cannot replace the resource itself")
    container, key = hit.chain[-1]
    if isinstance(container, dict) and key != hit.name and op.suffix:
        del container[key]  # a choice element may change type: valueString -> valueQuantity
        key = hit.name + op.suffix
    container[key] = op.value(hit.type)


def _move(doc: dict, op: _Operation) -> None:
    owner, key, items, _ = _list(doc, op)
    for label, i in (("source", op.source), ("destination", op.destination)):
        if not 0 <= i < len(items):
            raise op.fail(f"{label} {i} is out of range: {key!r} has {len(items)} items")
    shadow = owner.get("_" + key)
    for seq in (items, shadow) if isinstance(shadow, list) else (items,):
        seq.insert(op.destination, seq.pop(op.source))


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
