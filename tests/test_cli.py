"""The `fhir-service` command as a user runs it: help everywhere, and `load` (what make serve does)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

CLI = [sys.executable, "-m", "fhir_service.cli"]


@pytest.mark.parametrize("command", [[], ["serve"], ["load"], ["definitions", "fetch"], ["validate"], ["package"],
                                     ["reindex"]])
def test_every_command_has_help(command):
    out = subprocess.run(CLI + command + ["--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout


def _counts(db: str) -> tuple[int, int]:
    from fhir_service.storage import open_repository
    repo = open_repository(db)
    try:
        return (repo.query_once("SELECT COUNT(*) FROM resource")[0][0],
                repo.query_once("SELECT COUNT(*) FROM resource_version")[0][0])
    finally:
        repo.close()


def test_load_examples_twice_makes_no_duplicates(tmp_path):
    db = f"sqlite:///{tmp_path / 'fhir.db'}"
    first = subprocess.run(CLI + ["load", "examples/", "--database", db], capture_output=True, text=True, cwd=ROOT,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "loaded" in first.stderr
    after_first = _counts(db)
    assert after_first[0] > 400  # the practice, its patients and the profiles
    again = subprocess.run(CLI + ["load", "examples/", "--database", db, "--quiet"], capture_output=True, text=True,
                           cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _counts(db) == after_first  # no new resources and no new versions


def test_load_reports_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Patient", "gender": "robot"}')
    db = f"sqlite:///{tmp_path / 'fhir.db'}"
    out = subprocess.run(CLI + ["load", str(bad), "--database", db, "--quiet"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 1
    assert "bad.json" in out.stderr and "1 failed" in out.stderr
