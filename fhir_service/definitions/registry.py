"""An in-memory index of conformance resources, by canonical URL and by type.

The core package holds ~4,600 files; loading them all would make start-up slow. We read the
package's own ``.index.json`` (one small file) and load each resource the first time it is
asked for. Things every request needs (the resource type list, the SearchParameters by base
type) are derived once and pickled next to the package, so a warm start reads one file.

Extra resources (the project's ``profiles/``, ``--ig`` files, conformance resources stored on
the server) are added with :meth:`Definitions.add`; they shadow core entries with the same URL.
"""
from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from .. import jsonutil
from .fetch import core_package_dir, fetch_core, is_present

CANONICAL_TYPES = {
    "StructureDefinition", "SearchParameter", "ValueSet", "CodeSystem", "CompartmentDefinition",
    "OperationDefinition", "ConceptMap", "NamingSystem", "CapabilityStatement", "Questionnaire",
    "PlanDefinition", "ActivityDefinition", "Measure", "Library", "ImplementationGuide",
    "StructureMap", "GraphDefinition", "MessageDefinition", "EventDefinition", "TerminologyCapabilities",
    "ExampleScenario", "ResearchDefinition", "ResearchElementDefinition", "EffectEvidenceSynthesis",
    "Evidence", "EvidenceVariable", "RiskEvidenceSynthesis", "ChargeItemDefinition", "ObservationDefinition",
    "SpecimenDefinition",
}
_DERIVED_CACHE_VERSION = 2


def _split_canonical(url: str) -> tuple[str, str | None]:
    if "|" in url:
        base, version = url.split("|", 1)
        return base, version or None
    return url, None


class Definitions:
    """Conformance resources known to this process (core package + additions)."""

    def __init__(self, package_dir: Path):
        self.package_dir = Path(package_dir)
        self._lock = threading.RLock()
        # canonical url -> list of (version, filename-or-resource)
        self._by_url: dict[str, list[tuple[str | None, Any]]] = {}
        self._by_type: dict[str, list[Any]] = {}
        self._loaded: dict[str, dict] = {}
        self._added_search_params: dict[str, dict[str, dict]] = {}
        # Bumped by every add(): caches of compiled definitions compare it instead of re-reading.
        self.generation = 0
        index = jsonutil.loads((self.package_dir / ".index.json").read_bytes())
        for entry in index["files"]:
            ref = ("file", entry["filename"])
            if entry.get("url"):
                self._by_url.setdefault(entry["url"], []).append((entry.get("version"), ref))
            self._by_type.setdefault(entry["resourceType"], []).append(ref)
        self._derived = self._load_derived()

    # -- loading -----------------------------------------------------------------------------
    def _resolve(self, ref: Any) -> dict:
        if isinstance(ref, tuple) and ref[0] == "file":
            name = ref[1]
            res = self._loaded.get(name)
            if res is None:
                res = jsonutil.loads((self.package_dir / name).read_bytes())
                with self._lock:
                    self._loaded[name] = res
            return res
        return ref

    def _load_derived(self) -> dict:
        """Resource types, compartments and search parameters, cached in a pickle."""
        cache_file = self.package_dir.parent / ".imp2art-derived.pickle"
        stamp = (os.path.getmtime(self.package_dir / ".index.json"), _DERIVED_CACHE_VERSION)
        try:
            with open(cache_file, "rb") as fh:
                cached = pickle.load(fh)
            if cached.get("stamp") == stamp:
                return cached
        except Exception:
            pass
        resource_types = sorted(
            sd["type"] for sd in self.iter_type("StructureDefinition")
            if sd.get("kind") == "resource" and not sd.get("abstract")
            and sd.get("derivation") == "specialization" and sd.get("url", "").endswith("/" + sd["type"])
        )
        search_params: dict[str, dict[str, dict]] = {}
        for sp in self.iter_type("SearchParameter"):
            for base in sp.get("base", []):
                search_params.setdefault(base, {})[sp["code"]] = sp
        derived = {"stamp": stamp, "resource_types": resource_types, "search_params": search_params}
        try:
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump(derived, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only cache is fine: we just derive again next time
        return derived

    # -- additions ---------------------------------------------------------------------------
    def add(self, resource: dict) -> None:
        """Register a conformance resource (profile, ValueSet, SearchParameter, ...)."""
        rtype = resource.get("resourceType")
        with self._lock:
            self.generation += 1
            url = resource.get("url")
            if url:
                entries = self._by_url.setdefault(url, [])
                entries[:] = [e for e in entries if e[0] != resource.get("version")]
                entries.insert(0, (resource.get("version"), resource))
            if rtype:
                self._by_type.setdefault(rtype, []).append(resource)
            if rtype == "SearchParameter" and resource.get("code"):
                for base in resource.get("base", []):
                    self._added_search_params.setdefault(base, {})[resource["code"]] = resource

    def add_path(self, path: Path) -> int:
        """Add every JSON resource (or Bundle entry) in a file or directory; return the count."""
        path = Path(path)
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        count = 0
        for f in files:
            if f.name in ("package.json", ".index.json") or f.name.startswith("."):
                continue
            try:
                res = jsonutil.loads(f.read_bytes())
            except (jsonutil.JSONError, OSError):
                continue
            if not isinstance(res, dict) or "resourceType" not in res:
                continue
            items = [e.get("resource") for e in res.get("entry", [])] if res["resourceType"] == "Bundle" else [res]
            for item in items:
                if isinstance(item, dict) and item.get("resourceType"):
                    self.add(item)
                    count += 1
        return count

    # -- queries -----------------------------------------------------------------------------
    def get(self, canonical: str, version: str | None = None) -> dict | None:
        """A conformance resource by canonical URL (``url`` or ``url|version``)."""
        url, v = _split_canonical(canonical)
        version = version or v
        entries = self._by_url.get(url)
        if not entries:
            return None
        if version:
            for ver, ref in entries:
                if ver == version:
                    return self._resolve(ref)
            # A major.minor version may be given for a patch-level resource.
            for ver, ref in entries:
                if ver and ver.startswith(version + "."):
                    return self._resolve(ref)
            return None
        return self._resolve(entries[0][1])

    def iter_type(self, resource_type: str) -> Iterator[dict]:
        for ref in list(self._by_type.get(resource_type, [])):
            yield self._resolve(ref)

    def urls(self) -> Iterable[str]:
        return self._by_url.keys()

    @property
    def resource_types(self) -> list[str]:
        return self._derived["resource_types"]

    def is_resource_type(self, name: str) -> bool:
        return name in self._resource_type_set

    @property
    def _resource_type_set(self) -> set[str]:
        s = self.__dict__.get("_rts")
        if s is None:
            s = self.__dict__["_rts"] = set(self.resource_types)
        return s

    def structure_definition(self, url_or_type: str) -> dict | None:
        if "/" not in url_or_type:
            url_or_type = "http://hl7.org/fhir/StructureDefinition/" + url_or_type
        sd = self.get(url_or_type)
        return sd if sd and sd.get("resourceType") == "StructureDefinition" else None

    def search_params(self, resource_type: str) -> dict[str, dict]:
        """SearchParameters by code for a type, including Resource/DomainResource ones."""
        out: dict[str, dict] = {}
        core = self._derived["search_params"]
        for base in ("Resource", "DomainResource", resource_type):
            out.update(core.get(base, {}))
            out.update(self._added_search_params.get(base, {}))
        return out

    def compartment_definition(self, code: str) -> dict | None:
        for cd in self.iter_type("CompartmentDefinition"):
            if cd.get("code") == code and cd.get("url", "").startswith("http://hl7.org/fhir/CompartmentDefinition/"):
                return cd
        return None

    def value_set(self, url: str) -> dict | None:
        res = self.get(url)
        return res if res and res.get("resourceType") == "ValueSet" else None

    def code_system(self, url: str) -> dict | None:
        res = self.get(url)
        return res if res and res.get("resourceType") == "CodeSystem" else None


_shared: Definitions | None = None
_shared_lock = threading.Lock()


def get_definitions(package_cache: Path | None = None, profiles_dir: Path | None = None,
                    *, fetch: bool = True) -> Definitions:
    """The process-wide Definitions: core package (fetched if missing) plus ``profiles/``."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from ..config import Settings
            settings = Settings()
            cache = Path(package_cache or settings.package_cache)
            if not is_present(cache):
                if not fetch:
                    raise RuntimeError(f"R4 core package not found in {cache}; run `fhir-service definitions fetch`")
                fetch_core(cache)
            defs = Definitions(core_package_dir(cache))
            pdir = Path(profiles_dir or settings.profiles_dir)
            if pdir.is_dir():
                defs.add_path(pdir)
            _shared = defs
        return _shared
