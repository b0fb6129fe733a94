"""IMP²ART FHIR R4 service: asthma reviews, action plans and audit over plain FHIR REST."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
