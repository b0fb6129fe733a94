"""Official R4 examples that are genuinely invalid as published, each with the reason.

One list for every test that uses ../shared/conformance/r4-examples (round trip, validation).
"""
KNOWN_INVALID: dict[str, str] = {
    "Questionnaire-qs1.json": "nested items have no linkId (Questionnaire.item.linkId is 1..1)",
    "Library-zika-virus-intervention-logic.json": "codeFilter.valueSet is the placeholder 'urn:oid:X.Y.Z', not an OID",
    "ActivityDefinition-blood-tubes-supply.json": "empty narrative div (txt-2)",
    "ActivityDefinition-heart-valve-replacement.json": "empty narrative div (txt-2)",
    "Questionnaire-zika-virus-exposure-assessment.json": "narrative has only whitespace (txt-2)",
    "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json": "fullUrl .../Patient/pat12 but the resource id is pat2",
    "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json": "fullUrl .../Patient/pat12 but the resource id is pat2",
    "Bundle-lri-example.json": "fullUrls .../Observation/lri-* do not match the resource ids",
    "MedicationRequest-medrx0301.json": "dispenseRequest.performer refers to a Practitioner (R4 allows Organization only)",
    "Observation-clinical-gender.json": "performer refers to an Encounter (not an allowed target)",
    "Observation-example-genetics-brcapat.json": "uses the US Core ethnicity extension, which R4 core does not define",
}
