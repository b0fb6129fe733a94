"""Export ``profiles/`` as an npm-format FHIR package (``fhir-service package OUT.tgz``).

The layout other FHIR tools expect (the FHIR NPM package spec)::

    package/package.json      name, version, fhirVersions, dependencies
    package/.index.json       one row per resource: filename, resourceType, id, url, version, kind, type
    package/<Type>-<id>.json  the resources, one per file

StructureDefinitions are authored as differentials. When the project's snapshot generator
(:mod:`fhir_service.definitions.snapshot`) produces a snapshot, the exported copy carries it;
otherwise the differential is exported as it is and the result says how many lack snapshots.
The archive is deterministic (sorted entries, fixed timestamps), so the same input gives the
same bytes.
"""
from __future__ import annotations

import copy
import gzip
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from .. import jsonutil

INDEX_FIELDS = ("id", "url", "version", "kind", "type")
_MTIME = 0  # fixed timestamp for reproducible archives


@dataclass
class ExportResult:
    out: Path
    name: str
    version: str
    files: list[str] = field(default_factory=list)
    snapshots: int = 0
    without_snapshot: list[str] = field(default_factory=list)


def _read_resources(profiles_dir: Path) -> list[tuple[str, dict]]:
    """(filename, resource) for every resource file in profiles/, sorted by filename."""
    out = []
    for path in sorted(profiles_dir.glob("*.json")):
        if path.name in ("package.json", ".index.json") or path.name.startswith("."):
            continue
        res = jsonutil.loads(path.read_bytes())
        if not isinstance(res, dict) or "resourceType" not in res:
            raise click.ClickException(f"{path}: not a FHIR resource")
        out.append((f"{res['resourceType']}-{res['id']}.json", res))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise click.ClickException("two files in profiles/ hold the same resourceType and id")
    return out


def _snapshot_generator(profiles_dir: Path):
    """The project's generator and the definitions it needs, or (None, None) while it is absent."""
    try:
        from .snapshot import generate_snapshot
    except ImportError:
        return None, None
    from ..config import Settings
    from .fetch import core_package_dir, is_present
    from .registry import Definitions
    cache = Settings().package_cache
    if not is_present(cache):
        return None, None
    defs = Definitions(core_package_dir(cache))
    defs.add_path(profiles_dir)
    return generate_snapshot, defs


def _with_snapshot(sd: dict, generate, defs) -> dict | None:
    """A copy of ``sd`` with its snapshot, or None when the generator gives none."""
    if sd.get("snapshot"):
        return sd
    if generate is None:
        return None
    result = generate(copy.deepcopy(sd), defs)
    if isinstance(result, dict) and result.get("resourceType") == "StructureDefinition" and result.get("snapshot"):
        return result
    if isinstance(result, dict) and result.get("element"):
        return {**sd, "snapshot": result}
    if isinstance(result, list) and result:
        return {**sd, "snapshot": {"element": result}}
    return None


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"package/{name}")
    info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def export_package(profiles_dir: Path | str, out_tgz: Path | str) -> ExportResult:
    """Write ``profiles_dir`` as an npm-format FHIR package to ``out_tgz``."""
    profiles_dir, out_tgz = Path(profiles_dir), Path(out_tgz)
    manifest_path = profiles_dir / "package.json"
    if not manifest_path.exists():
        raise click.ClickException(f"{manifest_path} is missing")
    manifest = jsonutil.loads(manifest_path.read_bytes())
    result = ExportResult(out_tgz, manifest["name"], manifest["version"])

    generate, defs = _snapshot_generator(profiles_dir)
    index, payload = [], []
    for filename, res in _read_resources(profiles_dir):
        if res["resourceType"] == "StructureDefinition":
            full = _with_snapshot(res, generate, defs)
            if full is None:
                result.without_snapshot.append(res.get("url", filename))
            else:
                res, result.snapshots = full, result.snapshots + 1
        row = {"filename": filename, "resourceType": res["resourceType"]}
        row.update({k: res[k] for k in INDEX_FIELDS if isinstance(res.get(k), str)})
        index.append(row)
        payload.append((filename, jsonutil.dumps_bytes(res, pretty=True)))
        result.files.append(filename)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "package.json", jsonutil.dumps_bytes(manifest, pretty=True))
        _add(tar, ".index.json", jsonutil.dumps_bytes({"index-version": 1, "files": index}, pretty=True))
        for filename, data in payload:
            _add(tar, filename, data)
    out_tgz.parent.mkdir(parents=True, exist_ok=True)
    with open(out_tgz, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=_MTIME) as gz:
        gz.write(buf.getvalue())
    return result


@click.command("package")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profiles", "profiles_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of conformance resources with a package.json (default: the configured profiles/).")
def package_command(out: Path, profiles_dir: Path | None) -> None:
    """Write the IMP²ART conformance resources as an npm-format FHIR package (OUT.tgz)."""
    if profiles_dir is None:
        from ..config import Settings
        profiles_dir = Settings().profiles_dir
    result = export_package(profiles_dir, out)
    click.echo(f"{result.name}#{result.version}: {len(result.files)} resources -> {result.out}")
    if result.without_snapshot:
        click.echo(f"{len(result.without_snapshot)} StructureDefinition(s) exported as differentials only "
                   "(no snapshot from fhir_service.definitions.snapshot yet)", err=True)
