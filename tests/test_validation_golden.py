"""Speed work must not change results: every issue (severity, code, expression, text) the
validator gives on the R4 examples, the HL7 validator cases, profiles/ and examples/ is pinned
in test_validation_golden.json.

Regenerate (only when a result is meant to change):
    FHIR_GOLDEN_WRITE=1 .venv/bin/pytest tests/test_validation_golden.py
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import CONFORMANCE, ROOT
from fhir_service import jsonutil

GOLDEN = Path(__file__).with_name("test_validation_golden.json")


def _definitions(*extra: Path):
    from fhir_service.config import Settings
    from fhir_service.definitions.fetch import core_package_dir, is_present
    from fhir_service.definitions.registry import Definitions
    cache = Settings().package_cache
    if not is_present(cache):
        pytest.skip("R4 core package not installed (fhir-service definitions fetch)")
    defs = Definitions(core_package_dir(cache))
    for p in extra:
        defs.add_path(p)
    return defs


def _issues(resource, defs, profiles=()) -> list:
    from fhir_service.validation import validate_resource
    got = validate_resource(resource, defs, profiles=profiles)
    return sorted({(i.severity, i.code, "|".join(i.expression), i.text) for i in got})


def _load(path: Path):
    return jsonutil.loads(path.read_bytes())


def current_results() -> dict[str, list]:
    out: dict[str, list] = {}
    defs = _definitions(ROOT / "profiles")
    content = sorted(p for p in (ROOT / "profiles").glob("*.json") if p.name != "package.json")
    content += sorted((ROOT / "examples").glob("*.json"))
    for path in content:
        out[f"{path.parent.name}/{path.name}"] = _issues(_load(path), defs)
    for path in sorted((CONFORMANCE / "r4-examples").glob("*.json")):
        out[f"r4-examples/{path.name}"] = _issues(_load(path), defs)
    folder = CONFORMANCE / "hl7-validator-cases"
    files = folder / "files"
    for case in json.loads((folder / "cases.json").read_text())["cases"]:
        cdefs = _definitions(*(files / s for s in case.get("supporting", [])))
        res = _load(files / case["file"])
        out[f"hl7/{case['name']}"] = _issues(res, cdefs)
        if case.get("profile"):
            out[f"hl7/{case['name']}+profile"] = _issues(res, cdefs, [case["profile"]])
    return out


def test_results_match_golden():
    if not CONFORMANCE.is_dir():
        pytest.skip(f"{CONFORMANCE} is absent: the shared conformance material only exists beside the project in CI")
    got = json.loads(json.dumps(current_results()))  # tuples -> lists, as stored
    if os.environ.get("FHIR_GOLDEN_WRITE") == "1":
        GOLDEN.write_text(json.dumps(got, indent=0, sort_keys=True, ensure_ascii=False) + "\n")
        pytest.skip("golden file written")
    want = json.loads(GOLDEN.read_text())
    changed = {k: {"now": got.get(k), "was": want.get(k)} for k in set(got) | set(want) if got.get(k) != want.get(k)}
    assert not changed, json.dumps(dict(list(changed.items())[:3]), indent=1, ensure_ascii=False)
