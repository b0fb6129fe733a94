"""Index rows written through the storage API come back as written, on both backends."""
from __future__ import annotations

import pytest

from conftest import drop_database, new_database_url
from fhir_service.storage import Row, open_repository


@pytest.fixture()
def repo(backend, tmp_path):
    url = new_database_url(backend, tmp_path)
    r = open_repository(url)
    r.create_schema()
    yield r
    r.close()
    drop_database(url)


def test_numbers_of_mixed_python_types_in_one_column(repo):
    # An int among floats in one REAL column of one resource's rows (PostgreSQL receives each
    # column as one array, and a list of mixed Python types cannot be sent as one).
    rows = {"idx_number": [("probability", 0, 1, 0.5, 1.5), ("probability", 0, 2.5, 2, 3),
                           ("probability", 0, 3.25, 3.2, 3.3)]}
    row = Row("RiskAssessment", "r1", 1, "2026-01-01T00:00:00.000Z", False, '{"resourceType":"RiskAssessment"}', "POST")
    repo.run_write(lambda s: s.write(row, rows))
    with repo.transaction() as s:
        got = s.query("SELECT value, low, high FROM idx_number WHERE res_type = ? AND res_id = ? ORDER BY value",
                      ("RiskAssessment", "r1"))
    assert [tuple(float(x) for x in r) for r in got] == [(1.0, 0.5, 1.5), (2.5, 2.0, 3.0), (3.25, 3.2, 3.3)]
    # An update replaces them all.
    row2 = Row("RiskAssessment", "r1", 2, "2026-01-02T00:00:00.000Z", False, '{"resourceType":"RiskAssessment"}', "PUT")
    repo.run_write(lambda s: s.write(row2, {"idx_number": [("probability", 0, 7, 6.5, 7.5)]}))
    with repo.transaction() as s:
        got = s.query("SELECT value FROM idx_number WHERE res_type = ? AND res_id = ?", ("RiskAssessment", "r1"))
    assert [float(r[0]) for r in got] == [7.0]


def test_a_write_that_loses_a_race_changes_nothing(repo):
    # A create is sent as one statement outside any transaction (on both backends): when its
    # version already exists it must be refused whole, leaving no index row of its own behind.
    from fhir_service.storage import WriteConflict
    first = Row("Basic", "b1", 1, "2026-01-01T00:00:00.000Z", False, '{"resourceType":"Basic","n":1}', "POST")
    repo.run_write(lambda s: s.write(first, {"idx_token": [("code", 0, "urn:x", "first", None)]}))
    again = Row("Basic", "b1", 1, "2026-01-02T00:00:00.000Z", False, '{"resourceType":"Basic","n":2}', "POST")
    with pytest.raises(WriteConflict):
        repo.run_write(lambda s: s.write(again, {"idx_token": [("code", 0, "urn:x", "second", None)],
                                                 "idx_string": [("name", 0, "second", "second")]}))
    with repo.transaction() as s:
        assert s.query("SELECT code FROM idx_token WHERE res_id = 'b1'") == [("first",)]
        assert s.query("SELECT COUNT(*) FROM idx_string WHERE res_id = 'b1'") == [(0,)]
        assert s.query("SELECT version, content FROM resource WHERE res_id = 'b1'") == [(1, first.content)]
        assert s.query("SELECT COUNT(*) FROM resource_version WHERE res_id = 'b1'") == [(1,)]


def test_infinite_index_values_are_kept(repo):
    # A decimal too large for a float (1e400) indexes as infinity. JSON has no Infinity, so the
    # paths that send index rows as JSON must not turn it into NULL.
    inf = float("inf")
    row = Row("RiskAssessment", "r9", 1, "2026-01-01T00:00:00.000Z", False, '{"resourceType":"RiskAssessment"}', "POST")
    repo.run_write(lambda s: s.write(row, {"idx_number": [("probability", 0, inf, 1e300, inf)]}))
    with repo.transaction() as s:
        assert s.query("SELECT value, low, high FROM idx_number WHERE res_id = 'r9'") == [(inf, 1e300, inf)]
