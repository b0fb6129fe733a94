"""What every extraction step shares: the response, its form, the entries made so far, issues."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from .. import jsonutil
from ..outcome import FHIRError, Issue
from .expressions import Scope


def new_full_url() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass
class Extraction:
    service: Any
    questionnaire: dict  # assembled
    response: dict  # has an id (one is given to a response that had none)
    response_ref: str  # "QuestionnaireResponse/id"
    base_url: str
    scope: Scope
    entries: list[dict] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def add(self, resource: dict, full_url: str | None = None, request: dict | None = None) -> dict:
        entry = {"fullUrl": full_url or new_full_url(), "resource": resource,
                 "request": request or {"method": "POST", "url": resource["resourceType"]}}
        self.entries.append(entry)
        return entry

    def created(self, resource_type: str | None = None) -> Iterator[dict]:
        """Entries that create a resource (optionally of one type)."""
        for e in self.entries:
            if e["request"]["method"] == "POST" and (resource_type is None or e["resource"]["resourceType"] == resource_type):
                yield e

    def read(self, reference: str) -> dict | None:
        """The stored resource a literal "Type/id" reference points at (None when there is none)."""
        return read_reference(self.service, reference)

    def note(self, severity: str, code: str, text: str, where: str = "QuestionnaireResponse") -> None:
        self.issues.append(Issue(severity, code, text, [where]))


def read_reference(service: Any, reference: str | None) -> dict | None:
    rtype, _, rid = (reference or "").partition("/")
    if not rid or "/" in rid or not rtype[:1].isupper():
        return None
    try:
        return jsonutil.loads(service.read(rtype, rid).content)
    except FHIRError:
        return None
