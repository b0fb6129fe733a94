"""StructureDefinition-driven validation.

Public entry point: :func:`validate_resource`. Core calls it on every write; the
``$validate`` operation and ``fhir-service validate`` call it too.
"""
from __future__ import annotations

from typing import Callable, Iterable

from ..outcome import Issue
from ..definitions import Definitions

# Looks up a canonical resource (e.g. a Questionnaire stored on the server) by URL|version.
CanonicalResolver = Callable[[str], "dict | None"]


def validate_resource(resource: dict, definitions: Definitions, *, profiles: Iterable[str] = (),
                      resolver: CanonicalResolver | None = None, unknown_profile: str = "warning") -> list[Issue]:
    """All issues found in ``resource`` against base R4, ``meta.profile`` and ``profiles``."""
    from .validator import Validator
    return Validator.for_definitions(definitions).validate(
        resource, profiles=list(profiles), resolver=resolver, unknown_profile=unknown_profile)
