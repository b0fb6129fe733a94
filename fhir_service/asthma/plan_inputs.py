"""The numbers a plan template needs (its `usage` inputs), read from a review response."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..sdc.items import answers, first_answer
from . import terms


@dataclass
class PlanInputs:
    values: dict[str, Any] = field(default_factory=dict)  # template input name -> value
    triggers: list[dict] = field(default_factory=list)  # Codings

    def variables(self) -> dict[str, list]:
        """As FHIRPath %variables; an unknown input stays unbound, so conditions on it are deferred."""
        return {name: [value] for name, value in self.values.items()}


def from_response(response: dict) -> PlanInputs:
    """The inputs as answered. Thresholds in L/min are the form's own calculatedExpressions
    (plan-worse-lmin, plan-attack-lmin); a response without them leaves those inputs unbound."""
    values = {}
    for name, link_id in terms.PLAN_INPUT_ITEMS.items():
        value = first_answer(response, link_id)
        if value is not None:
            values[name] = value
    triggers = [c for c in answers(response, terms.TRIGGERS_ITEM) if isinstance(c, dict)]
    return PlanInputs(values, triggers)
