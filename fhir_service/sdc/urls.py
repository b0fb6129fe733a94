"""Canonical URLs of the SDC and core extensions this package reads or writes (defined once)."""
from __future__ import annotations

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"

# modular forms
SUB_QUESTIONNAIRE = SDC + "sdc-questionnaire-subQuestionnaire"
ASSEMBLE_EXPECTATION = SDC + "sdc-questionnaire-assemble-expectation"
ASSEMBLED_FROM = SDC + "sdc-questionnaire-assembledFrom"
CQF_LIBRARY = CORE + "cqf-library"
TARGET_CONSTRAINT = SDC + "sdc-questionnaire-targetConstraint"

# expressions and population
LAUNCH_CONTEXT = SDC + "sdc-questionnaire-launchContext"
VARIABLE = CORE + "variable"
INITIAL_EXPRESSION = SDC + "sdc-questionnaire-initialExpression"
CALCULATED_EXPRESSION = SDC + "sdc-questionnaire-calculatedExpression"
CANDIDATE_EXPRESSION = SDC + "sdc-questionnaire-candidateExpression"
ITEM_POPULATION_CONTEXT = SDC + "sdc-questionnaire-itemPopulationContext"
OBSERVATION_LINK_PERIOD = SDC + "sdc-questionnaire-observationLinkPeriod"
ENABLE_WHEN_EXPRESSION = SDC + "sdc-questionnaire-enableWhenExpression"
ITEM_WEIGHT = CORE + "itemWeight"
ORDINAL_VALUE = CORE + "ordinalValue"
CQF_EXPRESSION = CORE + "cqf-expression"

# extraction
OBSERVATION_EXTRACT = SDC + "sdc-questionnaire-observationExtract"
OBSERVATION_EXTRACT_CATEGORY = SDC + "sdc-questionnaire-observation-extract-category"
ITEM_EXTRACTION_CONTEXT = SDC + "sdc-questionnaire-itemExtractionContext"
DEFINITION_EXTRACT = SDC + "sdc-questionnaire-definitionExtract"
TEMPLATE_EXTRACT = SDC + "sdc-questionnaire-templateExtract"
TEMPLATE_EXTRACT_CONTEXT = SDC + "sdc-questionnaire-templateExtractContext"
TEMPLATE_EXTRACT_VALUE = SDC + "sdc-questionnaire-templateExtractValue"
EXTRACT_ALLOCATE_ID = SDC + "sdc-questionnaire-extractAllocateId"
QUESTIONNAIRE_UNIT = CORE + "questionnaire-unit"
HIDDEN = CORE + "questionnaire-hidden"

# the expression languages we evaluate
FHIRPATH = "text/fhirpath"
FHIR_QUERY = "application/x-fhir-query"

# Provenance.entity.role for the response an extraction came from
PROVENANCE_SOURCE = "source"
