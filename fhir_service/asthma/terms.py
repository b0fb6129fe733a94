"""The canonical URLs and review linkIds the action-plan code relies on (each named once here).

Codes themselves live in profiles/ (CodeSystems, PlanDefinitions, the review Questionnaire);
what is here are identifiers of that content.
"""
from __future__ import annotations

BASE = "https://fhir.imp2art.org/"

# extensions (profiles/StructureDefinition-*.json)
ZONE_EXT = BASE + "StructureDefinition/asthma-zone"
PLAN_TYPE_EXT = BASE + "StructureDefinition/asthma-plan-type"
THRESHOLDS_EXT = BASE + "StructureDefinition/asthma-peak-flow-thresholds"
MEDICINE_ROLE_EXT = BASE + "StructureDefinition/asthma-medicine-role"

# the review form whose action-plan module $apply pre-fills a draft from
REVIEW_QUESTIONNAIRE = BASE + "Questionnaire/asthma-review"

# the zone (CodeSystem asthma-zone) whose activities are ongoing rather than triggered
EVERYDAY_ZONE = "everyday"

# PlanDefinition inputs (see each template's `usage`) -> the review item that answers them
PLAN_INPUT_ITEMS = {
    "usesPeakFlow": "pef-uses",
    "pefPercentOfBest": "pef-percent-best",
    "worsePercent": "plan-worse-percent",
    "attackPercent": "plan-attack-percent",
    "worseLmin": "plan-worse-lmin",
    "attackLmin": "plan-attack-lmin",
}
TRIGGERS_ITEM = "risk-triggers"
PLAN_PROVIDE_ITEM = "plan-provide"
PLAN_TYPE_ITEM = "plan-type"
