"""OperationOutcome issues and the errors that carry them up to the HTTP layer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

SEVERITY_ORDER = {"fatal": 0, "error": 1, "warning": 2, "information": 3}


@dataclass
class Issue:
    """One OperationOutcome.issue. ``expression`` is a FHIRPath with indices, e.g.
    ``QuestionnaireResponse.item[2].answer[0]``."""
    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code: structure, required, value, invariant, code-invalid, ...
    text: str
    expression: list[str] = field(default_factory=list)
    diagnostics: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def to_fhir(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "details": {"text": self.text}}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Iterable[Issue], *, text_if_empty: str = "All OK") -> dict:
    issues = list(issues)
    if not issues:
        issues = [Issue("information", "informational", text_if_empty)]
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def has_errors(issues: Iterable[Issue]) -> bool:
    return any(i.is_error for i in issues)


class FHIRError(Exception):
    """A failure with an HTTP status and an OperationOutcome body."""

    def __init__(self, status: int, issues: Issue | list[Issue], headers: dict | None = None):
        self.status = status
        self.issues = [issues] if isinstance(issues, Issue) else list(issues)
        self.headers = headers or {}
        super().__init__("; ".join(i.text for i in self.issues))

    @property
    def outcome(self) -> dict:
        return operation_outcome(self.issues)


def error(status: int, code: str, text: str, expression: str | list[str] | None = None,
          severity: str = "error") -> FHIRError:
    expr = [expression] if isinstance(expression, str) else list(expression or [])
    return FHIRError(status, Issue(severity, code, text, expr))
