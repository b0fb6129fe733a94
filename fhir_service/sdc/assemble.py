"""Questionnaire/$assemble: modular forms (SDC modular.html, subQuestionnaire).

Each display item carrying a ``subQuestionnaire`` extension is replaced by the root items of
the referenced Questionnaire (recursively). The child's contained resources are merged; its
``launchContext`` (unique by name), ``cqf-library``, ``observationExtract`` and
``observationLinkPeriod`` go to the assembled root; its ``variable`` (unique by name),
``targetConstraint``, ``itemPopulationContext`` and ``itemExtractionContext`` go to the item
that held the display item (or the root). Everything else on the child is ignored.
Cycles, children that cannot be found or may not be children, and duplicate linkIds are errors.
"""
from __future__ import annotations

import copy
from typing import Callable

from ..outcome import FHIRError, Issue
from . import urls
from .expressions import ExpressionError, Scope, evaluate_json
from .items import expression_text, ext_value, extensions, typed_value, walk

Resolver = Callable[[str], "dict | None"]

_TO_ROOT = (urls.LAUNCH_CONTEXT, urls.CQF_LIBRARY, urls.OBSERVATION_EXTRACT, urls.OBSERVATION_LINK_PERIOD)
_TO_PARENT = (urls.VARIABLE, urls.TARGET_CONSTRAINT, urls.ITEM_POPULATION_CONTEXT, urls.ITEM_EXTRACTION_CONTEXT)
_SINGLE_ON_PARENT = (urls.ITEM_POPULATION_CONTEXT, urls.ITEM_EXTRACTION_CONTEXT)
_ASSEMBLED_EXPECTATION = {"assemble-root-or-child": "independent-root-or-child", "assemble-child": "independent-child"}
_MAY_BE_CHILD = {"assemble-root-or-child", "assemble-child", "independent-root-or-child", "independent-child"}


class AssembleError(FHIRError):
    def __init__(self, issues: list[Issue]):
        super().__init__(422, issues)


def needs_assembly(questionnaire: dict) -> bool:
    if ext_value(questionnaire, urls.ASSEMBLE_EXPECTATION) in ("assemble-root", "assemble-root-or-child"):
        return True
    return any(extensions(it, urls.SUB_QUESTIONNAIRE) for it in walk(questionnaire.get("item")))


def assemble_if_modular(questionnaire: dict, resolve: Resolver) -> dict:
    """The assembled form of a modular Questionnaire; the Questionnaire itself otherwise."""
    if not isinstance(questionnaire, dict) or not needs_assembly(questionnaire):
        return questionnaire
    return assemble(questionnaire, resolve)[0]


def assemble(root: dict, resolve: Resolver) -> tuple[dict, list[Issue]]:
    """(assembled Questionnaire, warnings); raises :class:`AssembleError` listing every error."""
    job = _Assembly(root, resolve)
    out = job.run()
    errors = [i for i in job.issues if i.is_error]
    if errors:
        raise AssembleError(errors)
    return out, job.issues


class _Assembly:
    def __init__(self, root: dict, resolve: Resolver):
        self.root = root
        self.resolve = resolve
        self.issues: list[Issue] = []
        self.root_extensions: list[dict] = []
        self.contained: dict[str, dict] = {c.get("id"): c for c in root.get("contained") or () if isinstance(c, dict)}
        self.assembled_from: list[str] = []

    def error(self, code: str, text: str, where: str) -> None:
        self.issues.append(Issue("error", code, text, [where]))

    def run(self) -> dict:
        out = copy.deepcopy(self.root)
        for key in ("id", "meta", "text"):
            out.pop(key, None)
        own = f"{self.root.get('url')}|{self.root.get('version')}" if self.root.get("url") else "(root)"
        prefix = self._prefix(self.root, "")
        out["item"] = self._expand(out.get("item") or [], out, [own], "Questionnaire", prefix)
        self._finish_root(out)
        self._check_link_ids(out)
        return out

    # -- substitution ------------------------------------------------------------------------
    def _expand(self, items: list, parent: dict, stack: list[str], path: str, prefix: str) -> list:
        result = []
        for i, item in enumerate(items):
            where = f"{path}.item[{i}]"
            subs = extensions(item, urls.SUB_QUESTIONNAIRE)
            if not subs:
                if item.get("item"):
                    item["item"] = self._expand(item["item"], item, stack, where, self._prefix(item, prefix))
                result.append(item)
                continue
            if item.get("type") != "display":
                self.error("structure", "subQuestionnaire may only be used on a display item", where)
                continue
            canonical = typed_value(subs[0])[1]
            result.extend(self._child_items(canonical, parent, stack, where + ".extension", prefix))
        return result

    def _child_items(self, canonical, parent: dict, stack: list[str], where: str, prefix: str) -> list:
        if not isinstance(canonical, str) or not canonical:
            self.error("required", "subQuestionnaire needs a canonical URL", where)
            return []
        url = canonical.split("|")[0]
        if any(s.split("|")[0] == url for s in stack):
            chain = " -> ".join(s.split("|")[0] for s in stack + [canonical])
            self.error("invariant", f"Modular Questionnaires refer to each other in a cycle: {chain}", where)
            return []
        child = self.resolve(canonical)
        if not isinstance(child, dict) or child.get("resourceType") != "Questionnaire":
            self.error("not-found", f"The subQuestionnaire {canonical} could not be found", where)
            return []
        if not self._may_be_child(child, canonical, where):
            return []
        used = f"{child.get('url', url)}|{child['version']}" if child.get("version") else child.get("url", url)
        if used not in self.assembled_from:
            self.assembled_from.append(used)
        child = copy.deepcopy(child)
        prefix = self._prefix(child, prefix)
        if prefix:
            _apply_prefix(child, prefix)
        self._merge_contained(child, canonical, where)
        self._propagate(child, parent, canonical, where)
        return self._expand(child.get("item") or [], parent, stack + [canonical], f"{where}('{canonical}')", prefix)

    def _may_be_child(self, child: dict, canonical: str, where: str) -> bool:
        ok = True
        expectation = ext_value(child, urls.ASSEMBLE_EXPECTATION)
        if expectation is not None and expectation not in _MAY_BE_CHILD:
            self.error("business-rule", f"{canonical} is '{expectation}' and may not be used as a subQuestionnaire", where)
            ok = False
        if child.get("implicitRules") or child.get("modifierExtension"):
            self.error("business-rule", f"{canonical} has implicitRules or modifierExtension, which modular "
                       "Questionnaires may not carry", where)
            ok = False
        if child.get("language") and self.root.get("language") and child["language"] != self.root["language"]:
            self.error("business-rule", f"{canonical} is in language {child['language']!r} but the root is in "
                       f"{self.root['language']!r}", where)
            ok = False
        return ok

    # -- what comes along with the items -----------------------------------------------------
    def _merge_contained(self, child: dict, canonical: str, where: str) -> None:
        for res in child.get("contained") or ():
            cid = res.get("id") if isinstance(res, dict) else None
            if cid in self.contained and self.contained[cid] != res:
                self.error("duplicate", f"{canonical} contains a different resource with the id '#{cid}' "
                           "than another module; give one of them a linkIdPrefix", where)
            elif cid:
                self.contained[cid] = res

    def _propagate(self, child: dict, parent: dict, canonical: str, where: str) -> None:
        for ext in child.get("extension") or ():
            url = ext.get("url") if isinstance(ext, dict) else None
            if url in _TO_ROOT:
                if url == urls.LAUNCH_CONTEXT and any(
                        _launch_name(e) == _launch_name(ext) for e in self._root_launch_contexts()):
                    continue
                if ext not in self.root_extensions:
                    self.root_extensions.append(ext)
            elif url in _TO_PARENT:
                self._add_to_parent(parent, ext, canonical, where)

    def _root_launch_contexts(self) -> list[dict]:
        return [e for e in list(self.root.get("extension") or ()) + self.root_extensions
                if isinstance(e, dict) and e.get("url") == urls.LAUNCH_CONTEXT]

    def _add_to_parent(self, parent: dict, ext: dict, canonical: str, where: str) -> None:
        existing = parent.setdefault("extension", [])
        url = ext["url"]
        if url == urls.VARIABLE:
            name = expression_text(typed_value(ext)[1])[2]
            if any(e.get("url") == url and expression_text(typed_value(e)[1])[2] == name for e in existing):
                self.error("duplicate", f"{canonical} declares the variable '{name}', which is already declared "
                           "where it is inserted", where)
                return
        elif url in _SINGLE_ON_PARENT and any(e.get("url") == url for e in existing):
            self.error("duplicate", f"{canonical} brings a second {url.rsplit('/', 1)[-1]} to the item it is "
                       "inserted in", where)
            return
        existing.append(ext)

    def _finish_root(self, out: dict) -> None:
        extensions_ = [e for e in out.get("extension") or () if e.get("url") != urls.ASSEMBLE_EXPECTATION]
        expectation = ext_value(self.root, urls.ASSEMBLE_EXPECTATION)
        if expectation in _ASSEMBLED_EXPECTATION:
            extensions_.append({"url": urls.ASSEMBLE_EXPECTATION, "valueCode": _ASSEMBLED_EXPECTATION[expectation]})
        # the root's own variables stay first: children's expressions may depend on them
        extensions_ += [e for e in self.root_extensions if e not in extensions_]
        extensions_ += [{"url": urls.ASSEMBLED_FROM, "valueCanonical": c} for c in self.assembled_from]
        if extensions_:
            out["extension"] = extensions_
        if self.contained:
            out["contained"] = list(self.contained.values())

    def _check_link_ids(self, out: dict) -> None:
        seen: set[str] = set()
        for item in walk(out.get("item")):
            link = item.get("linkId")
            if link in seen:
                self.error("duplicate", f"linkId '{link}' occurs more than once in the assembled Questionnaire",
                           "Questionnaire.item")
            seen.add(link)

    def _prefix(self, element: dict, inherited: str) -> str:
        """A ``linkIdPrefix`` variable declared on ``element`` (a FHIRPath string), else the inherited one."""
        for ext in extensions(element, urls.VARIABLE):
            text, _, name = expression_text(typed_value(ext)[1])
            if name == "linkIdPrefix" and text:
                try:
                    values = evaluate_json(text, {}, Scope())
                except ExpressionError:
                    values = []
                if values and isinstance(values[0], str):
                    return values[0]
        return inherited


def _launch_name(ext: dict):
    code = ext_value(ext, "name")
    return code.get("code") if isinstance(code, dict) else code


def _apply_prefix(child: dict, prefix: str) -> None:
    """linkIdPrefix: prefix linkIds, enableWhen.question, contained ids and '#' references."""
    for item in walk(child.get("item")):
        if isinstance(item.get("linkId"), str):
            item["linkId"] = prefix + item["linkId"]
        for ew in item.get("enableWhen") or ():
            if isinstance(ew.get("question"), str):
                ew["question"] = prefix + ew["question"]
    for res in child.get("contained") or ():
        if isinstance(res, dict) and res.get("id"):
            res["id"] = prefix + res["id"]

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and value.startswith("#") and len(value) > 1:
            return "#" + prefix + value[1:]
        return value
    child["item"] = fix(child.get("item") or [])
