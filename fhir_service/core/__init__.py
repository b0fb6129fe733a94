"""FHIR interactions as plain functions over a repository (no HTTP here)."""
