"""Validation speed: our full validation against fhir.resources' R4B ``model_validate_json``.

    .venv/bin/python bench/bench_validation.py [--seconds 2]

For each input (the IMP²ART example Patient, peak-flow Observation, action-plan CarePlan and
review QuestionnaireResponse, each with its meta.profile; the asthma review Questionnaire
module; and an R4 example Questionnaire), the same run measures:
- ours: JSON parse + structure, bindings, invariants, profiles (and the QuestionnaireResponse
  against its Questionnaire);
- baseline: ``fhir.resources.R4B`` ``Model.model_validate_json`` on the same text (a
  structural parse only).
Both sides cycle through the same thousands of distinct versions of each input (own id,
reference targets and quantities; see variants()), so that caches keyed on element values
hit no more often than they would on real traffic.
It reports validations/second and the ratio ours/baseline (>= 1.0 means we are at least as
fast), then the cold-start time of ``fhir-service validate`` on one file.
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_service import jsonutil  # noqa: E402
from fhir_service.definitions import get_definitions  # noqa: E402
from fhir_service.validation import validate_resource  # noqa: E402

R4_EXAMPLES = ROOT.parent / "shared" / "conformance" / "r4-examples"


def _from_example_bundle(rtype: str, profile_hint: str | None = None) -> dict:
    bundle = json.loads((ROOT / "examples" / "01-fiona-macleod.json").read_text())
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == rtype and (profile_hint is None or any(
                profile_hint in p for p in r.get("meta", {}).get("profile", []))):
            return r
    raise SystemExit(f"no {rtype} in examples/01-fiona-macleod.json")


def inputs() -> list[tuple[str, str]]:
    out = [
        ("Patient", json.dumps(_from_example_bundle("Patient"))),
        ("Observation", json.dumps(_from_example_bundle("Observation", "asthma-peak-flow"))),
        ("CarePlan", json.dumps(_from_example_bundle("CarePlan"))),
        ("Questionnaire", (ROOT / "profiles" / "Questionnaire-asthma-review-act.json").read_text()),
        ("QuestionnaireResponse", json.dumps(_from_example_bundle("QuestionnaireResponse"))),
    ]
    if R4_EXAMPLES.is_dir():
        out.append(("Questionnaire", (R4_EXAMPLES / "Questionnaire-f201.json").read_text()))
    return out


_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,50})$")


def _perturb(node, k: int, top: bool = False):
    """A copy of a resource with its own id, reference targets and quantities (variant k)."""
    if isinstance(node, list):
        return [_perturb(x, k) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if top and key == "id" and isinstance(value, str):
            value = f"{value[:50]}-{k}"
        elif key == "reference" and isinstance(value, str) and _REFERENCE.match(value):
            value = f"{value}-{k}"
        elif key == "valueQuantity" and isinstance(value, dict) and isinstance(value.get("value"), int):
            value = dict(value, value=value["value"] + k % 7)
        else:
            value = _perturb(value, k)
        out[key] = value
    return out


def variants(text: str, n: int) -> list[str]:
    """n distinct versions of one input, all valid alike. Validating the very same text again
    and again would let per-element caches (keyed on values such as a reference string) hit
    far more often than real traffic, where every resource differs."""
    resource = json.loads(text)
    return [json.dumps(_perturb(resource, k, top=True)) for k in range(n)]


def rates(ours, theirs, seconds: float, rounds: int = 10) -> tuple[float, float]:
    """Validations/second for both, measured in alternating slices so that load from other
    processes on a shared machine falls on both alike."""
    ours()  # warm: compiled definitions, caches
    theirs()
    counts, spent = [0, 0], [0.0, 0.0]
    for _ in range(rounds):
        for k, fn in enumerate((ours, theirs)):
            n, start = 0, time.perf_counter()
            deadline = start + seconds / (2 * rounds)
            while True:
                fn()
                n += 1
                if time.perf_counter() >= deadline:
                    break
            counts[k] += n
            spent[k] += time.perf_counter() - start
    return counts[0] / spent[0], counts[1] / spent[1]


def cold_start(path: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fhir_service.validation.cli", str(path), "--format", "json"],
                       cwd=ROOT, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--variants", type=int, default=20000,
                    help="distinct versions of each input, cycled through (see variants()); at most ~40 MB of them")
    a = ap.parse_args()
    defs = get_definitions()
    print(f"{'input':<22} {'ours/s':>9} {'fhir.resources/s':>17} {'ratio':>7}  issues (errors)", flush=True)
    ratios = []
    for rtype, text in inputs():
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}"), rtype)
        issues = validate_resource(jsonutil.loads(text), defs)
        texts = variants(text, max(100, min(a.variants, 40_000_000 // len(text))))  # ~40 MB a input
        mine, base = itertools.cycle(texts), itertools.cycle(texts)
        ours, theirs = rates(lambda: validate_resource(jsonutil.loads(next(mine)), defs),
                             lambda: model.model_validate_json(next(base)), 2 * a.seconds)
        ratios.append(ours / theirs)
        print(f"{rtype:<22} {ours:>9.0f} {theirs:>17.0f} {ours / theirs:>7.2f}  {len(issues)} "
              f"({sum(i.is_error for i in issues)})", flush=True)
    print(f"geometric mean ratio: {statistics.geometric_mean(ratios):.2f}")
    sample = ROOT / "profiles" / "Questionnaire-asthma-review-act.json"
    print(f"fhir-service validate, cold start on one file: {cold_start(sample):.2f} s (median of 5)")


if __name__ == "__main__":
    main()
