"""`fhir-service validate` from the command line (subprocess), and the HL7 conformance cases."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT.parent / "shared" / "conformance" / "hl7-validator-cases"
VALIDATE = [sys.executable, "-m", "fhir_service.validation.cli"]


def run(*args, cwd=ROOT):
    return subprocess.run(VALIDATE + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_single_file_json_prints_one_operation_outcome(tmp_path):
    good = tmp_path / "p.json"
    good.write_text('{"resourceType":"Patient","id":"p","text":{"status":"generated","div":'
                    '"<div xmlns=\\"http://www.w3.org/1999/xhtml\\">Anna</div>"}}')
    p = run(good, "--format", "json")
    assert p.returncode == 0, p.stderr
    oo = json.loads(p.stdout)
    assert oo["resourceType"] == "OperationOutcome"
    assert not [i for i in oo["issue"] if i["severity"] in ("error", "fatal")]


def test_errors_give_exit_status_1_and_expressions(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType":"Patient","active":"true"}')
    p = run(bad, "--format", "json")
    assert p.returncode == 1
    oo = json.loads(p.stdout)
    assert any(i.get("expression") == ["Patient.active"] for i in oo["issue"])


def test_unparseable_file_is_fatal(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{not json")
    p = run(f, "--format", "json")
    assert p.returncode == 1 and json.loads(p.stdout)["issue"][0]["severity"] == "fatal"


def test_text_format_several_files_and_ig_profile(tmp_path):
    prof = {"resourceType": "StructureDefinition", "url": "http://example.org/sd/p", "name": "P", "status": "active",
            "kind": "resource", "abstract": False, "type": "Patient", "derivation": "constraint",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
            "differential": {"element": [{"id": "Patient", "path": "Patient"},
                                         {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]}}
    (tmp_path / "ig").mkdir()
    (tmp_path / "ig" / "p.json").write_text(json.dumps(prof))
    a = tmp_path / "a.json"
    a.write_text('{"resourceType":"Patient"}')
    b = tmp_path / "b.json"
    b.write_text('{"resourceType":"Patient","birthDate":"2000"}')
    p = run(a, b, "--ig", tmp_path / "ig", "--profile", "http://example.org/sd/p")
    assert p.returncode == 1
    assert "a.json: FAILED" in p.stdout and "b.json: OK" in p.stdout
    assert "Patient.birthDate: minimum required = 1" in p.stdout


def _conformance_rows():
    spec = json.loads((CASES / "cases.json").read_text())
    for case in spec["cases"]:
        yield case, None, case["expected"]
        if case.get("profile"):
            yield case, case["profile"], case["expected_with_profile"]


def test_hl7_validator_cases_agreement():
    """Verdict agreement >= 95% and error location >= 80% (in-process: fresh definitions per case)."""
    if not CASES.exists():
        pytest.skip(f"{CASES} is absent: the shared conformance material only exists beside the project in CI")
    from fhir_service import jsonutil
    from fhir_service.config import Settings
    from fhir_service.definitions import Definitions
    from fhir_service.definitions.fetch import core_package_dir
    from fhir_service.validation import validate_resource
    files = CASES / "files"
    agree = total = located = invalid = 0
    misses = []
    for case, profile, expected in _conformance_rows():
        defs = Definitions(core_package_dir(Settings().package_cache))
        for s in case.get("supporting", []):
            defs.add_path(files / s)
        res = jsonutil.loads((files / case["file"]).read_bytes())
        got = [i for i in validate_resource(res, defs, profiles=[profile] if profile else []) if i.is_error]
        total += 1
        ok = bool(got) == (expected["errors"] > 0)
        agree += ok
        if not ok:
            misses.append(case["name"])
        if ok and got and expected.get("issues"):
            invalid += 1
            want = {_norm(p) for i in expected["issues"] for p in i.get("expression", [])}
            have = {_norm(p) for i in got for p in i.expression}
            located += bool(want & have) or any(h.startswith(w) or w.startswith(h) or h.endswith(w) or w.endswith(h)
                                                for w in want for h in have if w and h)
    assert agree / total >= 0.95, (agree, total, misses)
    assert located / max(invalid, 1) >= 0.80, (located, invalid)


def _norm(path: str) -> str:
    import re
    return re.sub(r"\.ofType\(\w+\)", "", re.sub(r"\[\d+\]", "", path or "")).lower()


def test_runner_script_through_the_cli():
    runner = CASES.parent / "run_validator_cases.py"
    if not runner.exists():
        pytest.skip(f"{runner} is absent: the shared conformance material only exists beside the project in CI")
    cmd = " ".join(VALIDATE)
    p = subprocess.run([sys.executable, str(runner), "--cmd", cmd, "--only", "qr"], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert "verdict agreement" in p.stdout, p.stdout + p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith("verdict agreement"))
    assert float(line.rsplit("=", 1)[1].strip().rstrip("%")) >= 95.0, p.stdout
