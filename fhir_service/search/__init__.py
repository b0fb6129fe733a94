"""FHIR search: parse search URLs, extract index values on write, compile searches to SQL.

Interface used by core (to be implemented in this package):

- ``index_resource(definitions, resource) -> IndexRows``: the index rows for every
  SearchParameter that applies to the resource's type (see storage/schema.py INDEX_TABLES).
- ``match(session, definitions, resource_type, query) -> list[tuple[str, str]]``: the
  (type, id) of current, non-deleted resources matching a query string like
  ``identifier=http://x|1&name=smith`` (conditional create/update/delete and conditional
  references in transactions). Raises FHIRError(400) for an invalid query.
- ``search(session, definitions, request) -> dict``: a searchset Bundle.
"""
