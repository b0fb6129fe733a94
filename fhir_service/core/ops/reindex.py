"""$reindex: bring the search index up to date after a SearchParameter is added.

Runs in batches (each its own transaction), logging progress; answers with a Parameters
giving how many resources were indexed. ``fhir-service reindex`` does the same with a
progress bar.
"""
from __future__ import annotations

import logging

from ... import search
from ..operations import Operation, OperationCall, register

log = logging.getLogger(__name__)


def _reindex(call: OperationCall) -> tuple[int, dict]:
    service = call.service
    service.sync_conformance()

    def progress(done: int, total: int) -> None:
        log.info("$reindex: %d of %d resources", done, total)
    count = search.reindex(service.repo, service.definitions, progress=progress)
    return 200, {"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": count}]}


register(Operation("reindex", _reindex, frozenset({"system"}), affects_state=True,
                   definition="urn:imp2art:OperationDefinition:reindex",
                   documentation="Re-extract search index values for every resource (after adding a SearchParameter)"))
