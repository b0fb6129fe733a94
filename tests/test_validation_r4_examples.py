"""No errors on the official R4 examples, except the ones the spec publishes with errors."""
from __future__ import annotations

from conftest import require_conformance
from fhir_service import jsonutil
from fhir_service.definitions import get_definitions
from fhir_service.validation import validate_resource


def test_no_errors_on_r4_examples():
    from r4_known_invalid import KNOWN_INVALID
    folder = require_conformance("r4-examples")
    defs = get_definitions()
    unexpected, stale = [], []
    for path in sorted(folder.glob("*.json")):
        errs = [i for i in validate_resource(jsonutil.loads(path.read_bytes()), defs) if i.is_error]
        if errs and path.name not in KNOWN_INVALID:
            unexpected.append((path.name, errs[0].expression, errs[0].text))
        if not errs and path.name in KNOWN_INVALID:
            stale.append(path.name)
    assert not unexpected, unexpected[:5]
    assert not stale, f"listed as invalid but validate cleanly: {stale}"


def test_known_invalid_examples_are_flagged():
    from r4_known_invalid import KNOWN_INVALID
    folder = require_conformance("r4-examples")
    for name in KNOWN_INVALID:
        res = jsonutil.loads((folder / name).read_bytes())
        assert any(i.is_error for i in validate_resource(res, get_definitions())), name
