"""The IMP²ART domain: turning a completed asthma review into a personal asthma action plan.

Clinical wording and codes come from the content in ``profiles/`` (PlanDefinitions,
CodeSystems, the review Questionnaire); this package only knows the canonical URLs and the
handful of review items it has to read.
"""
