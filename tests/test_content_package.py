"""`fhir-service package OUT.tgz` writes profiles/ as an npm-format FHIR package that loads back."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_service import jsonutil
from fhir_service.definitions.package_export import export_package, package_command

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
RESOURCE_FILES = sorted(p.name for p in PROFILES.glob("*.json") if p.name != "package.json")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "imp2art.fhir.r4-0.1.0.tgz"
    result = export_package(PROFILES, out)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        members = {n: jsonutil.loads(tar.extractfile(n).read()) for n in names}
        extract_to = out.parent / "extracted"
        tar.extractall(extract_to)
    return result, out, names, members, extract_to / "package"


def test_npm_layout(exported):
    _, _, names, members, _ = exported
    assert names[:2] == ["package/package.json", "package/.index.json"]
    assert sorted(n.removeprefix("package/") for n in names[2:]) == RESOURCE_FILES
    manifest = members["package/package.json"]
    assert manifest["name"] == "imp2art.fhir.r4" and manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}


def test_index_lists_every_resource(exported):
    _, _, _, members, _ = exported
    index = members["package/.index.json"]
    assert index["index-version"] == 1
    assert sorted(row["filename"] for row in index["files"]) == RESOURCE_FILES
    for row in index["files"]:
        res = members[f"package/{row['filename']}"]
        assert row["resourceType"] == res["resourceType"] and row["id"] == res["id"]
        assert row["url"] == res["url"] and row["version"] == res["version"]
        if res["resourceType"] == "StructureDefinition":
            assert row["kind"] == res["kind"] and row["type"] == res["type"]


def test_structure_definitions_carry_snapshots_when_the_generator_makes_them(exported):
    result, _, _, members, _ = exported
    sds = [r for r in members.values() if r.get("resourceType") == "StructureDefinition"]
    assert len(sds) == result.snapshots + len(result.without_snapshot) == 10
    for sd in sds:
        assert sd["differential"]["element"], "the differential is always kept"
        if sd["url"] not in result.without_snapshot:
            assert sd["snapshot"]["element"][0]["path"] == sd["type"]
    if result.without_snapshot:
        pytest.skip(f"no snapshot yet for {len(result.without_snapshot)} profile(s) from fhir_service.definitions.snapshot")


def test_export_is_reproducible(exported, tmp_path):
    _, out, _, _, _ = exported
    again = tmp_path / "again.tgz"
    export_package(PROFILES, again)
    assert again.read_bytes() == out.read_bytes()


def test_package_loads_back_into_fresh_definitions(exported):
    from fhir_service.config import Settings
    from fhir_service.definitions.fetch import core_package_dir, is_present
    from fhir_service.definitions.registry import Definitions
    _, _, _, _, package_dir = exported
    cache = Settings().package_cache
    if not is_present(cache):
        pytest.skip("R4 core package not installed (fhir-service definitions fetch)")
    defs = Definitions(core_package_dir(cache))
    assert defs.add_path(package_dir) == len(RESOURCE_FILES)
    base = "https://fhir.imp2art.org"
    assert defs.get(f"{base}/Questionnaire/asthma-review|0.1.0")["resourceType"] == "Questionnaire"
    assert defs.structure_definition(f"{base}/StructureDefinition/asthma-action-plan")["type"] == "CarePlan"
    assert defs.value_set(f"{base}/ValueSet/asthma-zone") is not None
    assert defs.code_system(f"{base}/CodeSystem/asthma-zone") is not None
    assert "plan-type" in defs.search_params("CarePlan") and "measure" in defs.search_params("Goal")


def test_cli_command(tmp_path):
    out = tmp_path / "pkg.tgz"
    result = CliRunner().invoke(package_command, [str(out), "--profiles", str(PROFILES)])
    assert result.exit_code == 0, result.output
    assert "imp2art.fhir.r4#0.1.0" in result.output and out.exists()
