"""The FHIR interactions (http.html) as plain methods over a repository.

No HTTP here: methods take parsed JSON and header values and return a :class:`Result` or raise
:class:`FHIRError`. Every write runs in one database transaction that also writes the search
index rows; a write that loses a race to another writer is retried from the start (or, for
one taken from the event loop, made again the locking way in a worker thread).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .. import jsonutil, search
from ..config import Settings
from ..definitions import Definitions
from ..outcome import FHIRError, Issue, error
from ..storage import IndexRows, Repository, Row, Session, WriteConflict
from .resource_utils import check_id, new_id, now_instant, parse_etag, with_meta, without_server_meta

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_WRITE_ATTEMPTS = 5
# Conformance resources that change what the server validates or indexes.
CONFORMANCE_TYPES = {"StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "Questionnaire",
                     "PlanDefinition", "ConceptMap", "NamingSystem"}
_CONFORMANCE_SORTED = tuple(sorted(CONFORMANCE_TYPES))
_CONFORMANCE_CHANGED_SQL = ("SELECT content FROM resource WHERE res_type IN (" + ", ".join("?" * len(_CONFORMANCE_SORTED))
                            + ") AND seq > ? AND content IS NOT NULL ORDER BY seq")


def _stored_result(prepared: tuple[str, dict, str], now: Row | None, created: bool, warnings: list) -> Result | None:
    """The answer to a write that was refused as a conflict, if ``now`` (the resource's current
    version) is that very write (``prepared``: its text, with its version and lastUpdated): its
    commit went through, the reply was lost, and it was sent again. It succeeded."""
    if now is not None and now.content == prepared[2]:
        return Result(201 if created else 200, now, warnings)
    return None


_READ_IN_WORK = object()  # (an update's current version: read by its work, in its transaction)


class _ConformanceChanged(Exception):
    """A conformance resource was stored after this process last looked (see create_async)."""


@dataclass
class Result:
    status: int
    row: Row | None = None
    issues: list[Issue] = field(default_factory=list)  # warnings/information to report


class FHIRService:
    def __init__(self, repo: Repository, definitions: Definitions, settings: Settings | None = None):
        self.repo = repo
        self.definitions = definitions
        self.settings = settings or Settings()
        self._conformance_seq = 0  # the newest conformance write this process has seen

    # -- plumbing ----------------------------------------------------------------------------
    def in_write_transaction(self, work: Callable[[Session], T], session: Session | None = None) -> T:
        """Run ``work`` in a write transaction (or the caller's), retrying lost races."""
        if session is not None:
            return work(session)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                return self.repo.run_write(work)
            except WriteConflict:
                result = self._after_lost_race(work, attempt)
                if result is not None:
                    return result
        raise AssertionError("unreachable")

    async def _in_write_transaction_async(self, work: Callable[[Session], T]) -> T:
        """in_write_transaction, awaited on the event loop (only for what repo.loop_writes lists)."""
        for attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                return await self.repo.run_write_async(work)
            except WriteConflict:
                # (in a worker thread: it may read the database)
                result = await asyncio.to_thread(self._after_lost_race, work, attempt)
                if result is not None:
                    return result
        raise AssertionError("unreachable")

    def _after_lost_race(self, work: Callable[[Session], T], attempt: int) -> T | None:
        """What to do when ``work`` lost a race: its result if it was stored after all (see
        _create_work), None to try again, or a 409 once the attempts are used up."""
        stored = getattr(work, "already_stored", None)
        result = stored() if stored else None
        if result is None and attempt == MAX_WRITE_ATTEMPTS - 1:
            raise error(409, "conflict", "The resource was changed by another request at the same time; retry")
        return result

    def check_type(self, res_type: str) -> str:
        if not self.definitions.is_resource_type(res_type):
            raise error(404, "not-supported", f"Unknown resource type {res_type!r}")
        return res_type

    def check_body(self, res_type: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise error(400, "structure", "The body must be a JSON object holding a FHIR resource")
        rt = body.get("resourceType")
        if not isinstance(rt, str):
            raise error(400, "required", "The resource has no resourceType", "resourceType")
        if rt != res_type:
            raise error(400, "invalid", f"resourceType {rt!r} does not match the URL's type {res_type!r}", "resourceType")
        return body

    def sync_conformance(self, session: Session | None = None) -> None:
        """Pick up profiles, ValueSets, SearchParameters... that any process stored since we last looked.

        Several server processes share one database, so a conformance resource written through
        another process must reach this process's Definitions before we validate or index.
        """
        types = _CONFORMANCE_SORTED
        newest = session.newest_seq(types) if session is not None else self.repo.newest_seq(types)
        if newest <= self._conformance_seq:
            return
        params = [*types, self._conformance_seq]
        rows = session.query(_CONFORMANCE_CHANGED_SQL, params) if session else \
            self.repo.query_once(_CONFORMANCE_CHANGED_SQL, params)
        for (content,) in rows:
            self.definitions.add(jsonutil.loads(content))
        self._conformance_seq = newest

    def validate(self, resource: dict, session: Session | None = None, *, sync: bool = True) -> list[Issue]:
        """Validate before storing: errors reject the write (422); warnings are returned.
        ``sync=False``: against the definitions as they are (the caller checks afterwards)."""
        if not self.settings.validate_writes:
            return []
        if sync:
            self.sync_conformance(session)
        from ..validation import validate_resource
        # Without sync, canonical lookups must not look in the database either: the definitions
        # as they are, which the caller's check at write time covers.
        issues = validate_resource(resource, self.definitions,
                                   resolver=self.resolve_canonical if sync else self.definitions.get,
                                   unknown_profile=self.settings.unknown_profile)
        if any(i.is_error for i in issues):
            raise FHIRError(422, [i for i in issues if i.severity in ("fatal", "error", "warning")])
        return [i for i in issues if i.severity == "warning"]

    def resolve_canonical(self, canonical: str) -> dict | None:
        """A conformance resource by canonical URL (``url`` or ``url|version``).

        Conformance resources stored on the server reach the definitions through
        sync_conformance, so one lookup covers the server's own, profiles/ and core.
        """
        self.sync_conformance()
        return self.definitions.get(canonical)

    def index_rows(self, resource: dict) -> IndexRows:
        """The search-index rows of a resource. They depend only on what the client sent (not on
        the server's id or meta), so writes compute them before entering the write transaction,
        where only one writer at a time may work."""
        return search.index_resource(self.definitions, resource)

    @staticmethod
    def _version_content(resource: dict, res_id: str, version: int) -> tuple[str, dict, str]:
        """(lastUpdated, the resource with server meta, its JSON text) for a new version."""
        last_updated = now_instant()
        content = with_meta(resource, res_id, version, last_updated)
        return last_updated, content, jsonutil.dumps(content)

    def _store(self, session: Session, res_type: str, res_id: str, resource: dict, version: int, method: str,
               index_rows: IndexRows | None = None, prepared: tuple[str, dict, str] | None = None) -> Row:
        """Write a new version. ``prepared`` (from _version_content) is made before the write
        transaction where it can be (a create knows its id and version), off the single writer."""
        last_updated, content, text = prepared or self._version_content(resource, res_id, version)
        if index_rows is None:
            index_rows = self.index_rows(content)
        row = session.write(Row(res_type, res_id, version, last_updated, False, text, method), index_rows)
        if res_type in CONFORMANCE_TYPES:
            self.definitions.add(content)
        return row

    def _match_one_or_none(self, session: Session, res_type: str, query: str, what: str) -> tuple[str, str] | None:
        session.lock(f"conditional:{res_type}?{query}")
        matches = search.match(session, self.definitions, res_type, query)
        if len(matches) > 1:
            raise error(412, "multiple-matches", f"{what}: {len(matches)} resources match {res_type}?{query}; "
                        "the criteria must select at most one")
        return matches[0] if matches else None

    # -- create ------------------------------------------------------------------------------
    def create(self, res_type: str, body: Any, *, if_none_exist: str | None = None,
               session: Session | None = None, res_id: str | None = None, prevalidated: bool = False) -> Result:
        work = self._create_work(res_type, body, if_none_exist, res_id, prevalidated)
        return self.in_write_transaction(work, session)

    async def create_async(self, res_type: str, body: Any) -> Result:
        """create, on the event loop where the backend can await writes (repo.loop_writes).

        Nothing on the event loop waits for the database: the resource is validated against the
        definitions as this process last saw them, and the write itself first checks (once per
        batch of writes) that no conformance resource has been stored since; if one has, the
        create is made the ordinary way (sync, validate, write) in a worker thread."""
        work = self._create_work(res_type, body, None, None, False, conformance_seen=self._conformance_seq)
        try:
            return await self._in_write_transaction_async(work)
        except _ConformanceChanged:
            return await asyncio.to_thread(self.create, res_type, body)

    def _create_work(self, res_type: str, body: Any, if_none_exist: str | None, res_id: str | None,
                     prevalidated: bool, conformance_seen: int | None = None) -> Callable[[Session], Result]:
        """Everything a create does before the write transaction, and the work to run in it.
        ``conformance_seen``: validate without looking for new conformance resources first; the
        work checks that none was stored after that one (else _ConformanceChanged)."""
        self.check_type(res_type)
        resource = dict(self.check_body(res_type, body))
        resource.pop("id", None)  # the server assigns the id
        warnings = [] if prevalidated else self.validate(resource, sync=conformance_seen is None)
        index_rows = self.index_rows(resource)
        new_res_id = res_id or new_id()
        prepared = self._version_content(resource, new_res_id, 1)

        def work(s: Session) -> Result:
            if conformance_seen is not None and s.newest_seq(_CONFORMANCE_SORTED) > conformance_seen:
                raise _ConformanceChanged()
            if if_none_exist:
                hit = self._match_one_or_none(s, res_type, if_none_exist, "Conditional create")
                if hit:
                    return Result(200, s.current(*hit))
            row = self._store(s, res_type, new_res_id, resource, 1, "POST", index_rows, prepared)
            return Result(201, row, warnings)

        if res_id is None:
            # A conflict on an id this server just made up means an earlier attempt of this very
            # create was stored: it succeeded, and must not be reported as failed or made twice.
            work.already_stored = lambda: _stored_result(  # type: ignore[attr-defined]
                prepared, self.repo.current(res_type, new_res_id), True, warnings)
        return work

    # -- read --------------------------------------------------------------------------------
    def read(self, res_type: str, res_id: str) -> Row:
        self.check_type(res_type)
        check_id(res_id)
        return self._readable(res_type, res_id, self.repo.current(res_type, res_id))

    async def read_async(self, res_type: str, res_id: str) -> Row:
        """read, awaited on the event loop (the backend decides how: Repository.current_async)."""
        self.check_type(res_type)
        check_id(res_id)
        return self._readable(res_type, res_id, await self.repo.current_async(res_type, res_id))

    @staticmethod
    def _readable(res_type: str, res_id: str, row: Row | None) -> Row:
        if row is None:
            raise error(404, "not-found", f"{res_type}/{res_id} is not known")
        if row.deleted:
            raise FHIRError(410, Issue("error", "deleted", f"{res_type}/{res_id} has been deleted"),
                            headers={"ETag": f'W/"{row.version}"'})
        return row

    def vread(self, res_type: str, res_id: str, version: str) -> Row:
        number = self._version_number(res_type, res_id, version)
        return self._readable_version(res_type, res_id, version, self.repo.version(res_type, res_id, number))

    async def vread_async(self, res_type: str, res_id: str, version: str) -> Row:
        """vread, awaited on the event loop (the backend decides how: Repository.version_async)."""
        number = self._version_number(res_type, res_id, version)
        row = await self.repo.version_async(res_type, res_id, number)
        return self._readable_version(res_type, res_id, version, row)

    def _version_number(self, res_type: str, res_id: str, version: str) -> int:
        self.check_type(res_type)
        check_id(res_id)
        if not version.isdigit():
            raise error(404, "not-found", f"{res_type}/{res_id} has no version {version!r}")
        return int(version)

    @staticmethod
    def _readable_version(res_type: str, res_id: str, version: str, row: Row | None) -> Row:
        if row is None:
            raise error(404, "not-found", f"{res_type}/{res_id} has no version {version}")
        if row.deleted:
            raise error(410, "deleted", f"Version {version} of {res_type}/{res_id} is a deletion")
        return row

    # -- update ------------------------------------------------------------------------------
    def update(self, res_type: str, res_id: str, body: Any, *, if_match: str | None = None,
               session: Session | None = None, prevalidated: bool = False) -> Result:
        return self.in_write_transaction(self._update_work(res_type, res_id, body, if_match, prevalidated), session)

    async def update_async(self, res_type: str, res_id: str, body: Any, *, if_match: str | None = None) -> Result:
        """update, on the event loop where the backend can await writes (repo.loop_writes).
        Where the write reads in its own transaction (SQLite: in process, in microseconds), the
        update is validated after a sync, as ever; else see _update_read_first."""
        if not self.repo.loop_writes_read_first:
            return await self._in_write_transaction_async(self._update_work(res_type, res_id, body, if_match, False))
        if res_type in CONFORMANCE_TYPES:
            # (what is stored reaches this process's definitions as it is written, so a write
            # that may yet be refused, as a batch's may, is not for these)
            return await self._update_in_thread(res_type, res_id, body, if_match)
        return await self._update_read_first(res_type, res_id, body, if_match)

    async def _update_read_first(self, res_type: str, res_id: str, body: Any, if_match: str | None) -> Result:
        """update where the write cannot read (repo.loop_writes_read_first). The current version
        is read first, and the write of the next one fails (WriteConflict) if another writer
        stored it meanwhile. Validation is against the definitions as this process last saw
        them, checked at write time as for create_async. Should either fail, the update is
        made the locking way, in a worker thread: writers racing for one resource then take
        turns instead of retrying."""
        self.check_type(res_type)
        check_id(res_id)
        current = await self.repo.current_async(res_type, res_id)
        work = self._update_work(res_type, res_id, body, if_match, False,
                                 conformance_seen=self._conformance_seq, current=current)
        try:
            return await self.repo.run_write_async(work)
        except _ConformanceChanged:
            pass
        except WriteConflict:
            # A write whose batch was stored but whose reply was lost is run again, and meets
            # itself: it was stored, and is answered so.
            stored = work.result_if_stored(await self.repo.current_async(res_type, res_id))  # type: ignore[attr-defined]
            if stored is not None:
                return stored
        return await self._update_in_thread(res_type, res_id, body, if_match)

    async def _update_in_thread(self, res_type: str, res_id: str, body: Any, if_match: str | None) -> Result:
        return await asyncio.to_thread(self.update, res_type, res_id, body, if_match=if_match)

    def _update_work(self, res_type: str, res_id: str, body: Any, if_match: str | None, prevalidated: bool,
                     conformance_seen: int | None = None, current: Row | None | object = _READ_IN_WORK,
                     ) -> Callable[[Session], Result]:
        """Everything an update does before the write transaction, and the work to run in it.
        ``conformance_seen``: as for _create_work. ``current``: the current version as read
        before (else the work reads it, locked)."""
        self.check_type(res_type)
        check_id(res_id)
        resource = self.check_body(res_type, body)
        if "id" not in resource:
            raise error(400, "required", f"The resource has no id; an update of {res_type}/{res_id} needs one", f"{res_type}.id")
        if resource["id"] != res_id:
            raise error(400, "invalid", f"The resource id {resource['id']!r} does not match the URL's id {res_id!r}", f"{res_type}.id")
        expected = parse_etag(if_match, "If-Match") if if_match else None
        warnings = [] if prevalidated else self.validate(resource, sync=conformance_seen is None)
        index_rows = self.index_rows(resource)
        prepared = None
        if current is not _READ_IN_WORK:  # (the version it would write is known: made once, here)
            version = current.version + 1 if current else 1  # type: ignore[union-attr]
            prepared = self._version_content(resource, res_id, version)

        def work(s: Session) -> Result:
            if conformance_seen is not None and s.newest_seq(_CONFORMANCE_SORTED) > conformance_seen:
                raise _ConformanceChanged()
            return self._update_locked(s, res_type, res_id, resource, expected, warnings, "PUT", index_rows, current,
                                       prepared)

        if prepared is not None:
            # ``now``: the current version, read after the write was refused.
            created = current is None or current.deleted  # type: ignore[union-attr]
            work.result_if_stored = lambda now: _stored_result(prepared, now, created, warnings)  # type: ignore
        return work

    def _update_locked(self, s: Session, res_type: str, res_id: str, resource: dict, expected: int | None,
                       warnings: list[Issue], method: str, index_rows: IndexRows | None = None,
                       current: Row | None | object = _READ_IN_WORK,
                       prepared: tuple[str, dict, str] | None = None) -> Result:
        if current is _READ_IN_WORK:
            current = s.current(res_type, res_id, for_update=True)
        if expected is not None and (current is None or current.deleted or current.version != expected):
            have = "does not exist" if current is None or current.deleted else f"is at version {current.version}"
            raise error(412, "conflict", f"If-Match expected version {expected} but {res_type}/{res_id} {have}")
        if current is not None and not current.deleted and current.content:
            if without_server_meta(jsonutil.loads(current.content)) == without_server_meta(resource):
                return Result(200, current, warnings)  # nothing changed: no new version
        version = current.version + 1 if current else 1
        row = self._store(s, res_type, res_id, resource, version, method, index_rows, prepared)
        created = current is None or current.deleted
        return Result(201 if created else 200, row, warnings)

    def conditional_update(self, res_type: str, query: str, body: Any, *, if_match: str | None = None,
                           session: Session | None = None) -> Result:
        self.check_type(res_type)
        resource = self.check_body(res_type, body)
        expected = parse_etag(if_match, "If-Match") if if_match else None
        warnings = self.validate(resource)
        index_rows = self.index_rows(resource)

        def work(s: Session) -> Result:
            hit = self._match_one_or_none(s, res_type, query, "Conditional update")
            if hit is None:
                if "id" in resource:
                    check_id(resource["id"], f"{res_type}.id")
                    return self._update_locked(s, res_type, resource["id"], resource, expected, warnings, "PUT",
                                               index_rows)
                row = self._store(s, res_type, new_id(), resource, 1, "POST", index_rows)
                return Result(201, row, warnings)
            if "id" in resource and resource["id"] != hit[1]:
                raise error(400, "invalid", f"The resource id {resource['id']!r} does not match the resource "
                            f"found by the search ({hit[1]})", f"{res_type}.id")
            return self._update_locked(s, res_type, hit[1], dict(resource, id=hit[1]), expected, warnings, "PUT",
                                       index_rows)
        return self.in_write_transaction(work, session)

    # -- patch -------------------------------------------------------------------------------
    def patch(self, res_type: str, res_id: str | None, kind: str, document: Any, *, if_match: str | None = None,
              query: str | None = None, session: Session | None = None) -> Result:
        """``kind`` is "json-patch" or "fhirpath-patch"; ``query`` makes it a conditional patch."""
        self.check_type(res_type)
        if res_id is not None:
            check_id(res_id)
        expected = parse_etag(if_match, "If-Match") if if_match else None

        def work(s: Session) -> Result:
            target_id = res_id
            if query is not None:
                hit = self._match_one_or_none(s, res_type, query, "Conditional patch")
                if hit is None:
                    raise error(404, "not-found", f"No {res_type} matches {query}")
                target_id = hit[1]
            current = s.current(res_type, target_id, for_update=True)
            if current is None or current.deleted:
                raise error(404 if current is None else 410, "not-found", f"{res_type}/{target_id} does not exist")
            if expected is not None and current.version != expected:
                raise error(412, "conflict", f"If-Match expected version {expected} but {res_type}/{target_id} "
                            f"is at version {current.version}")
            from . import patch as patching
            original = jsonutil.loads(current.content)
            if kind == "json-patch":
                patched = patching.apply_json_patch(original, document)
            else:
                patched = patching.apply_fhirpath_patch(original, document)
            if patched.get("resourceType") != res_type or patched.get("id") != target_id:
                raise error(422, "processing", "A patch may not change the resource's type or id")
            warnings = self.validate(patched, s)  # the patched result is validated like any update
            return self._update_locked(s, res_type, target_id, patched, None, warnings, "PATCH")
        return self.in_write_transaction(work, session)

    # -- delete ------------------------------------------------------------------------------
    def delete(self, res_type: str, res_id: str, *, session: Session | None = None) -> Result:
        self.check_type(res_type)
        check_id(res_id)

        def work(s: Session) -> Result:
            return self._delete_locked(s, res_type, res_id)
        return self.in_write_transaction(work, session)

    def _delete_locked(self, s: Session, res_type: str, res_id: str) -> Result:
        current = s.current(res_type, res_id, for_update=True)
        if current is None:
            raise error(404, "not-found", f"{res_type}/{res_id} is not known")
        if current.deleted:
            return Result(200, current, [Issue("information", "informational", f"{res_type}/{res_id} was already deleted")])
        row = s.write(Row(res_type, res_id, current.version + 1, now_instant(), True, None, "DELETE"), None)
        return Result(200, row, [Issue("information", "informational", f"Deleted {res_type}/{res_id}")])

    def conditional_delete(self, res_type: str, query: str, *, session: Session | None = None) -> Result:
        self.check_type(res_type)

        def work(s: Session) -> Result:
            hit = self._match_one_or_none(s, res_type, query, "Conditional delete")
            if hit is None:
                return Result(200, None, [Issue("information", "not-found", f"No {res_type} matches {query}; nothing deleted")])
            return self._delete_locked(s, *hit)
        return self.in_write_transaction(work, session)

    # -- history -----------------------------------------------------------------------------
    def history(self, res_type: str | None, res_id: str | None, params: list[tuple[str, str]], base_url: str) -> dict:
        from .history import history_bundle
        if res_type:
            self.check_type(res_type)
        if res_id:
            check_id(res_id)
        return history_bundle(self, res_type, res_id, params, base_url)

    # -- search ------------------------------------------------------------------------------
    def search(self, res_type: str | None, params: list[tuple[str, str]], base_url: str, *, strict: bool = False,
               compartment: tuple[str, str] | None = None) -> dict:
        if res_type:
            self.check_type(res_type)
        if compartment:
            self.check_type(compartment[0])
            check_id(compartment[1])
        self.sync_conformance()
        kwargs = dict(resource_type=res_type, params=params, base_url=base_url, strict=strict, compartment=compartment)
        try:
            # Most searches fit in a page: a read transaction, which never waits for writers.
            with self.repo.transaction() as s:
                return search.search(s, self.definitions, may_snapshot=False, **kwargs)
        except search.NeedsSnapshot:
            # Larger results are snapshotted for stable paging, which writes.
            with self.repo.transaction(write=True) as s:
                return search.search(s, self.definitions, **kwargs)

    def search_page(self, params: list[tuple[str, str]], base_url: str) -> dict:
        with self.repo.transaction() as s:
            return search.page(s, self.definitions, params, base_url)

