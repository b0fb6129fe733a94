"""Loading files of resources and bundles through the service (the `load` command, make serve).

Transaction and batch bundles are processed as such. Any other bundle, and single resources,
are written entry by entry: PUT when they have an id (so a reload makes no duplicates),
POST otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from . import jsonutil
from .core import bundles
from .outcome import FHIRError


@dataclass
class LoadReport:
    files: int = 0
    resources: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out.extend(sorted(f for f in p.rglob("*.json") if not f.name.startswith(".")) if p.is_dir() else [p])
    return out


def _as_bundle(resource: dict) -> dict:
    """A transaction Bundle that writes ``resource`` (or a non-transaction bundle's entries)."""
    items = [e.get("resource") for e in resource.get("entry", [])] if resource.get("resourceType") == "Bundle" \
        else [resource]
    entries = []
    for item in items:
        if not isinstance(item, dict) or "resourceType" not in item:
            continue
        if item.get("id"):
            request = {"method": "PUT", "url": f"{item['resourceType']}/{item['id']}"}
        else:
            request = {"method": "POST", "url": item["resourceType"]}
        entries.append({"resource": item, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_paths(service, paths: Iterable[Path], *, progress: bool = True, base_url: str = "") -> LoadReport:
    report = LoadReport()
    files = [f for f in _files(paths) if f.name not in ("package.json",)]
    bar = tqdm(files, desc="loading", unit="file", disable=not progress)
    for path in bar:
        report.files += 1
        try:
            data = jsonutil.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise FHIRError(400, [])
            bundle = data if data.get("resourceType") == "Bundle" and data.get("type") in ("transaction", "batch") \
                else _as_bundle(data)
            response = bundles.process(service, bundle, base_url)
            failed = [e for e in response.get("entry", []) if not e["response"]["status"].startswith(("2", "3"))]
            report.resources += len(response.get("entry", [])) - len(failed)
            for e in failed:
                report.failures.append((path.name, jsonutil.dumps(e["response"].get("outcome", {}))[:300]))
        except (FHIRError, jsonutil.JSONError, OSError) as exc:
            report.failures.append((path.name, str(exc)[:300]))
        bar.set_postfix(resources=report.resources)
    return report
