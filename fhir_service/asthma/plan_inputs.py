"""The numbers a plan template needs (its `usage` inputs), read from a review response."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..sdc.items import answers, first_answer
from . import terms


def lmin_of(personal_best: Any, percent: Any) -> int:
    """A threshold in L/min: personal best x percent / 100, to the nearest L/min (halves up)."""
    value = Decimal(str(personal_best)) * Decimal(str(percent)) / 100
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass
class PlanInputs:
    values: dict[str, Any] = field(default_factory=dict)  # template input name -> value
    personal_best: Any = None
    triggers: list[dict] = field(default_factory=list)  # Codings

    def variables(self) -> dict[str, list]:
        """As FHIRPath %variables; an unknown input stays unbound, so conditions on it are deferred."""
        return {name: [value] for name, value in self.values.items()}


def from_response(response: dict) -> PlanInputs:
    values = {}
    for name, link_id in terms.PLAN_INPUT_ITEMS.items():
        value = first_answer(response, link_id)
        if value is not None:
            values[name] = value
    best = first_answer(response, terms.PERSONAL_BEST_ITEM)
    if best is not None:  # the form normally calculates these; work them out if it did not
        for lmin, percent in terms.LMIN_FROM_PERCENT.items():
            if lmin not in values and percent in values:
                values[lmin] = lmin_of(best, values[percent])
    triggers = [c for c in answers(response, terms.TRIGGERS_ITEM) if isinstance(c, dict)]
    return PlanInputs(values, best, triggers)
