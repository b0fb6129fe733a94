"""Official R4 examples that are genuinely invalid as published, each with the reason.

One list for every test that uses ../shared/conformance/r4-examples (round trip, validation).
"""
KNOWN_INVALID: dict[str, str] = {
    "Questionnaire-qs1.json": "nested items have no linkId (Questionnaire.item.linkId is 1..1)",
    "Library-zika-virus-intervention-logic.json": "codeFilter.valueSet is the placeholder 'urn:oid:X.Y.Z', not an OID",
}
