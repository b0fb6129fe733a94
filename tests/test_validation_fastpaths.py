"""The speed paths must give the general code's answers.

- fp_fast (invariants and macro criteria straight on the JSON) against the compiled FHIRPath
  engine, on every invariant evaluated over profiles/ and examples/;
- the walker's key-table fast path against its general path (properties out of definition
  order, "_x" siblings, two choice types), by comparing issues.
"""
from __future__ import annotations

import copy

import pytest

from conftest import ROOT
from fhir_service import jsonutil


@pytest.fixture(scope="module")
def defs():
    from fhir_service.config import Settings
    from fhir_service.definitions.fetch import core_package_dir, is_present
    from fhir_service.definitions.registry import Definitions
    cache = Settings().package_cache
    if not is_present(cache):
        pytest.skip("R4 core package not installed (fhir-service definitions fetch)")
    d = Definitions(core_package_dir(cache))
    d.add_path(ROOT / "profiles")
    return d


def _corpus() -> list[dict]:
    out = []
    for path in sorted((ROOT / "profiles").glob("*.json")) + sorted((ROOT / "examples").glob("*.json")):
        if path.name != "package.json":
            out.append(jsonutil.loads(path.read_bytes()))
    return out


def test_fast_invariants_agree_with_the_compiled_engine(defs, monkeypatch):
    checked, wrong = _fast_against_general(defs, monkeypatch, _corpus())
    assert checked > 500
    assert wrong == []


def _peak_flow_variants() -> list[dict]:
    """The peak-flow Observation with the values fp_fast's direct reads (member = 'text',
    number literal comparisons) must hand back or answer exactly as the general engine."""
    from decimal import Decimal
    bundle = jsonutil.loads((ROOT / "examples" / "01-fiona-macleod.json").read_bytes())
    base = next(e["resource"] for e in bundle["entry"] if "asthma-peak-flow" in str(e["resource"].get("meta")))
    out = []
    for value in (29, 30, 900, 901, Decimal("29.99"), Decimal("900.0"), 460.5, 460.0, True, "460", None,
                  [460], {"value": 1}):
        r = copy.deepcopy(base)
        r["valueQuantity"]["value"] = value
        out.append(r)
    for coding in ([{"system": "http://snomed.info/sct", "code": "18491006"}],
                   [{"system": "http://snomed.info/sct", "code": "x"}, {"system": "http://snomed.info/sct"}],
                   [{"system": "http://snomed.info/sct", "_system": {"extension": []}, "code": "18491006"}],
                   [{"system": 5, "code": ["251936000"]}], [{"code": "251936000"}], []):
        r = copy.deepcopy(base)
        r["code"]["coding"] = coding
        out.append(r)
    for q in ({"system": "http://unitsofmeasure.org", "code": "%", "value": 50},
              {"system": "http://unitsofmeasure.org", "_code": {"id": "c"}, "code": "L/min", "value": 50},
              {"system": ["http://unitsofmeasure.org"], "code": "L/min", "value": 50}):
        r = copy.deepcopy(base)
        r["valueQuantity"] = q
        out.append(r)
    r = copy.deepcopy(base)
    del r["valueQuantity"]
    r["valueInteger"] = 460
    out.append(r)
    return out


def test_fast_invariants_agree_on_edge_values(defs, monkeypatch):
    checked, wrong = _fast_against_general(defs, monkeypatch, _peak_flow_variants())
    assert checked > 50
    assert wrong == []


def _fast_against_general(defs, monkeypatch, resources) -> tuple[int, list]:
    from fhir_service.validation import fp_compiler, invariants, validate_resource
    from fhir_service.validation.fp_values import Item, as_bool

    checked, wrong = [0], []
    evaluate = invariants.evaluate

    def both(w, node, data, path, type_code, ext=None):
        cons = invariants.constraints_of(node)
        got = invariants._fast_results(w, node, data, type_code, ext) if cons and type(data) is dict else None
        for i, c in enumerate(cons if got is not None else ()):
            ok = got[0][i]
            if ok is invariants._LIVE:
                ok = invariants._run_fast(c.fast.fn, data, got[1])
            if ok is None or c.fallback:
                continue
            checked[0] += 1
            try:
                r = fp_compiler.evaluate(c.fn, w.v.fp_env(w), Item(data, node, type_code, ext))
                general = len(r) == 1 and r[0].v is True
            except Exception as exc:  # the fast path should have bailed
                general = repr(exc)
            if general != ok:
                wrong.append((c.key, path, ok, general))
        return evaluate(w, node, data, path, type_code, ext)

    per_item = fp_compiler._per_item

    def per_item_both(env, it, i, fn, focus):
        fast = per_item(env, it, i, fn, focus)
        general = fp_compiler._with_this(env, it, i, fn, focus)
        checked[0] += 1

        def norm(x):
            try:
                return as_bool(x)
            except Exception:
                return "error"
        if norm(fast) != norm(general):
            wrong.append(("criterion", it, norm(fast), norm(general)))
        return fast

    monkeypatch.setattr(invariants, "evaluate", both)
    monkeypatch.setattr(fp_compiler, "_per_item", per_item_both)
    for res in resources:
        validate_resource(res, defs)
    monkeypatch.undo()
    return checked[0], wrong


def _issues(res, defs):
    from fhir_service.validation import validate_resource
    return sorted((i.severity, i.code, "|".join(i.expression), i.text) for i in validate_resource(res, defs))


def test_property_order_does_not_change_results(defs):
    """Reversed property order takes the general path; the issues must be the same."""
    def reverse(x):
        if isinstance(x, dict):
            return {k: reverse(x[k]) for k in reversed(list(x))}
        if isinstance(x, list):
            return [reverse(e) for e in x]
        return x
    for res in _corpus():
        assert _issues(reverse(copy.deepcopy(res)), defs) == _issues(res, defs), res.get("id")


def test_general_path_cases_still_reported(defs):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "valueString": "a", "valueInteger": 1, "_status": {"extension": [{"url": "http://example.org/x",
                                                                            "valueString": "y"}]},
           "category": [None], "issued": 5}
    got = _issues(obs, defs)
    texts = " ".join(t for _, _, _, t in got)
    assert "Only one value is allowed for the choice element value[x]" in texts
    assert "Null values are not allowed in arrays" in texts
    assert "the primitive value must be a string" in texts


def test_plain_discriminator_paths_read_as_the_general_code():
    from fhir_service.validation.slicing import _values_getter, instance_values
    items = [{"system": "s", "code": "c"}, {"system": ["a", None, "b"]}, {"valueCoding": {"code": "x"}},
             {"coding": [{"system": "s"}, {"code": "c"}, "junk"]}, {"value": None, "valueString": "v"},
             "text", None, {}, {"code": {"coding": [{"system": "s", "code": "1"}, {"system": "t"}]}}]
    for path in ("system", "code", "value", "coding.system", "code.coding.code", "$this", "code.coding"):
        get = _values_getter(path)
        assert get is not None
        for item in items:
            assert get(None, item, path) == instance_values(None, item, path), (path, item)
    for path in ("extension('http://x').value", "resolve()", "value.ofType(Coding)", "code.where(x)"):
        assert _values_getter(path) is None
