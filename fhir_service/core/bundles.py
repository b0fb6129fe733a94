"""batch and transaction (http.html#transaction).

A transaction runs in one database transaction: every entry succeeds or nothing is written.
Entries are processed in the specification's order (DELETE, POST, PUT/PATCH, GET/HEAD) after
every ``urn:uuid:``/``urn:oid:`` fullUrl and every conditional reference has been resolved,
so references are rewritten before anything is validated or stored.
A batch runs each entry in its own transaction; entries succeed or fail independently.
"""
from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .. import jsonutil, search
from ..outcome import FHIRError, error, operation_outcome
from ..storage import Session
from .resource_utils import check_id, etag, new_id, parse_etag

if TYPE_CHECKING:
    from .service import FHIRService, Result

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}
_CONDITIONAL_REF = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")


class Entry:
    """One bundle entry's request, parsed."""

    def __init__(self, index: int, raw: Any, base_url: str):
        self.index = index
        self.where = f"Bundle.entry[{index}]"
        if not isinstance(raw, dict):
            raise error(400, "structure", "A bundle entry must be an object", self.where)
        request = raw.get("request")
        if not isinstance(request, dict):
            raise error(400, "required", "A batch or transaction entry needs a request", f"{self.where}.request")
        self.method = request.get("method")
        if self.method not in ORDER:
            raise error(400, "value", f"Unsupported request.method {self.method!r}", f"{self.where}.request.method")
        url = request.get("url")
        if not isinstance(url, str) or not url:
            raise error(400, "required", "request.url is required", f"{self.where}.request.url")
        if url.startswith(base_url + "/"):
            url = url[len(base_url) + 1:]
        self.url = url.lstrip("/")
        self.full_url = raw.get("fullUrl")
        self.resource = raw.get("resource")
        self.client_resource = self.resource  # as sent: a transaction's work rewrites from this
        self.if_none_exist = request.get("ifNoneExist")
        self.if_match = request.get("ifMatch")
        self.if_none_match = request.get("ifNoneMatch")
        parts = urlsplit(self.url)
        self.path = [p for p in parts.path.split("/") if p]
        self.query = parts.query
        self.res_type = self.path[0] if self.path else None
        self.res_id = self.path[1] if len(self.path) > 1 else None
        self.target_id: str | None = None  # the id this entry writes, once known
        self.existing = False  # a conditional create found a match (nothing is written)
        if self.method in ("POST", "PUT") and not isinstance(self.resource, dict):
            raise error(400, "required", f"A {self.method} entry needs a resource", f"{self.where}.resource")

    def fail(self, exc: FHIRError) -> FHIRError:
        """The same error, with its locations rewritten to point into this entry."""
        rtype = self.resource.get("resourceType") if isinstance(self.resource, dict) else None
        for issue in exc.issues:
            located = []
            for expr in issue.expression:
                if expr.startswith("Bundle."):
                    located.append(expr)
                elif rtype and (expr == rtype or expr.startswith(rtype + ".")):
                    located.append(f"{self.where}.resource" + expr[len(rtype):])
                else:
                    located.append(f"{self.where}.request" if expr in ("If-Match", "ifMatch") else self.where)
            issue.expression = located or [self.where]
        return exc


def process(service: "FHIRService", bundle: Any, base_url: str) -> dict:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise error(400, "invalid", "POST to the base expects a Bundle", "resourceType")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise error(400, "value", f"Bundle.type must be batch or transaction, not {kind!r}", "Bundle.type")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise error(400, "structure", "Bundle.entry must be an array", "Bundle.entry")
    if kind == "transaction":
        return _transaction(service, raw_entries, base_url)
    return _batch(service, raw_entries, base_url)


# -- transaction ---------------------------------------------------------------------------------
def _transaction(service: "FHIRService", raw_entries: list, base_url: str) -> dict:
    entries = [Entry(i, raw, base_url) for i, raw in enumerate(raw_entries)]
    _check_no_duplicates(entries)
    for e in entries:  # structure and validity first, outside the write lock
        if e.method in ("POST", "PUT") and e.res_type:
            service.check_type(e.res_type)
            try:
                service.check_body(e.res_type, e.resource)
                service.validate(e.resource)
            except FHIRError as exc:
                raise e.fail(exc)

    def work(s: Session) -> dict:
        # Everything the work decides is decided again on each run: a write transaction that
        # lost a race (or a batch of them that had to be redone) runs its work again, from the
        # entries as the client sent them, with new ids for the entries that create.
        mapping = _resolve_identities(service, s, entries)
        for e in entries:
            if isinstance(e.client_resource, dict):
                e.resource = _rewrite(service, s, e, e.client_resource, mapping)
        responses: dict[int, dict] = {}
        for e in sorted(entries, key=lambda x: (ORDER[x.method], x.index)):
            try:
                responses[e.index] = _run_entry(service, s, e, base_url, in_transaction=True)
            except FHIRError as exc:
                raise e.fail(exc)
        return {"resourceType": "Bundle", "type": "transaction-response",
                "entry": [responses[e.index] for e in entries]}
    return service.in_write_transaction(work)


def _check_no_duplicates(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        key = None
        if e.method in ("PUT", "DELETE", "PATCH") and e.res_id and not e.query:
            key = f"{e.res_type}/{e.res_id}"
        elif e.full_url and e.method == "POST":
            key = e.full_url
        if key:
            if key in seen:
                raise error(400, "duplicate", f"{key} appears in entries {seen[key]} and {e.index} of one transaction",
                            e.where)
            seen[key] = e.index


def _resolve_identities(service: "FHIRService", s: Session, entries: list[Entry]) -> dict[str, str]:
    """fullUrl -> "Type/id" for every entry that creates or updates a resource."""
    mapping: dict[str, str] = {}
    for e in entries:
        e.target_id, e.existing = None, False
        if e.method == "POST" and e.res_type:
            hit = None
            if e.if_none_exist:
                hit = service._match_one_or_none(s, e.res_type, e.if_none_exist, "Conditional create")
            e.target_id = hit[1] if hit else new_id()
            e.existing = bool(hit)
        elif e.method == "PUT" and e.res_type:
            if e.query:
                hit = service._match_one_or_none(s, e.res_type, e.query, "Conditional update")
                e.target_id = hit[1] if hit else (e.client_resource.get("id") or new_id())
            elif e.res_id:
                e.target_id = check_id(e.res_id, f"{e.where}.request.url")
        if e.full_url and e.target_id and e.res_type:
            mapping[e.full_url] = f"{e.res_type}/{e.target_id}"
    return mapping


def _rewrite(service: "FHIRService", s: Session, e: Entry, value: Any, mapping: dict[str, str]) -> Any:
    """Replace placeholder and conditional references everywhere in a resource."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                out[k] = _resolve_reference(service, s, e, v, mapping)
            elif k == "div" and isinstance(v, str):
                for full_url, target in mapping.items():
                    if full_url in v:
                        v = v.replace(full_url, target)
                out[k] = v
            else:
                out[k] = _rewrite(service, s, e, v, mapping)
        return out
    if isinstance(value, list):
        return [_rewrite(service, s, e, v, mapping) for v in value]
    if isinstance(value, str) and value in mapping:
        return mapping[value]  # uri/canonical elements that point at another entry
    return value


def _resolve_reference(service: "FHIRService", s: Session, e: Entry, ref: str, mapping: dict[str, str]) -> str:
    if ref in mapping:
        return mapping[ref]
    if ref.startswith(("urn:uuid:", "urn:oid:")):
        raise error(404, "not-found", f"Reference {ref} matches no fullUrl in the transaction", e.where)
    m = _CONDITIONAL_REF.match(ref)
    if m:
        matches = search.match(s, service.definitions, service.check_type(m.group(1)), m.group(2))
        if len(matches) != 1:
            raise error(412, "multiple-matches" if matches else "not-found",
                        f"Conditional reference {ref} matches {len(matches)} resources; it must match exactly one", e.where)
        return f"{matches[0][0]}/{matches[0][1]}"
    return ref


# -- one entry ---------------------------------------------------------------------------------
def _response(result: "Result", base_url: str, *, with_resource: bool = False) -> dict:
    response: dict = {"status": STATUS_TEXT.get(result.status, str(result.status))}
    row = result.row
    if row is not None:
        response["location"] = f"{row.res_type}/{row.res_id}/_history/{row.version}"
        response["etag"] = etag(row.version)
        response["lastModified"] = row.last_updated
    if result.issues:
        response["outcome"] = operation_outcome(result.issues)
    entry: dict = {"response": response}
    if row is not None:
        entry["fullUrl"] = f"{base_url}/{row.res_type}/{row.res_id}"
        if with_resource and row.content:
            entry["resource"] = jsonutil.loads(row.content)
    return entry


def _run_entry(service: "FHIRService", s: Session | None, e: Entry, base_url: str, *, in_transaction: bool) -> dict:
    from .service import Result
    m = e.method
    if m in ("GET", "HEAD"):
        return _run_get(service, s, e, base_url)
    if not e.res_type:
        raise error(400, "value", f"{m} needs a resource type in request.url", f"{e.where}.request.url")
    service.check_type(e.res_type)
    if m == "POST":
        if in_transaction:
            if e.existing:
                return _response(Result(200, s.current(e.res_type, e.target_id)), base_url)
            result = service.create(e.res_type, e.resource, session=s, res_id=e.target_id, prevalidated=True)
        else:
            result = service.create(e.res_type, e.resource, if_none_exist=e.if_none_exist, session=s)
        return _response(result, base_url)
    if m == "PUT":
        if e.if_none_match:
            raise error(400, "not-supported", "ifNoneMatch is only meaningful on GET entries", f"{e.where}.request.ifNoneMatch")
        if in_transaction:
            resource = dict(e.resource, id=e.target_id) if e.query else e.resource
            result = service.update(e.res_type, e.target_id, resource, if_match=e.if_match, session=s, prevalidated=True)
        elif e.query:
            result = service.conditional_update(e.res_type, e.query, e.resource, if_match=e.if_match, session=s)
        else:
            result = service.update(e.res_type, e.res_id or "", e.resource, if_match=e.if_match, session=s)
        return _response(result, base_url)
    if m == "PATCH":
        kind, document = _patch_document(e)
        result = service.patch(e.res_type, None if e.query else e.res_id, kind, document, if_match=e.if_match,
                               query=e.query or None, session=s)
        return _response(result, base_url)
    # DELETE
    if e.query:
        result = service.conditional_delete(e.res_type, e.query, session=s)
    else:
        result = service.delete(e.res_type, e.res_id or "", session=s)
    return _response(Result(204 if result.row is None else 200, result.row, result.issues), base_url)


def _patch_document(e: Entry) -> tuple[str, Any]:
    res = e.resource
    if isinstance(res, dict) and res.get("resourceType") == "Parameters":
        return "fhirpath-patch", res
    if isinstance(res, dict) and res.get("resourceType") == "Binary":
        if res.get("contentType", "").split(";")[0].strip() != "application/json-patch+json":
            raise error(415, "not-supported", "A Binary patch must have contentType application/json-patch+json",
                        f"{e.where}.resource.contentType")
        try:
            return "json-patch", jsonutil.loads(base64.b64decode(res.get("data", ""), validate=True))
        except (ValueError, jsonutil.JSONError) as exc:
            raise error(400, "structure", f"The Binary's data is not a JSON Patch document: {exc}", f"{e.where}.resource.data")
    raise error(400, "invalid", "A PATCH entry needs a Parameters (FHIRPath Patch) or Binary (JSON Patch) resource",
                f"{e.where}.resource")


def _run_get(service: "FHIRService", s: Session | None, e: Entry, base_url: str) -> dict:
    params = parse_qsl(e.query, keep_blank_values=True)
    path = e.path
    if not path:
        bundle = service.search(None, params, base_url) if s is None else search.search(
            s, service.definitions, resource_type=None, params=params, base_url=base_url, strict=False)
        return {"resource": bundle, "response": {"status": "200 OK"}}
    service.check_type(path[0])
    if len(path) == 1:
        bundle = service.search(path[0], params, base_url) if s is None else search.search(
            s, service.definitions, resource_type=path[0], params=params, base_url=base_url, strict=False)
        return {"resource": bundle, "response": {"status": "200 OK"}}
    if len(path) == 2:
        row = service.read(path[0], path[1]) if s is None else _read_in(s, path[0], path[1])
    elif len(path) == 4 and path[2] == "_history":
        row = service.vread(path[0], path[1], path[3])
    elif path[-1] == "_history":
        return {"resource": service.history(path[0], path[1] if len(path) == 3 else None, params, base_url),
                "response": {"status": "200 OK"}}
    else:
        raise error(400, "not-supported", f"Unsupported GET {e.url}", f"{e.where}.request.url")
    if e.if_none_match and parse_etag(e.if_none_match, "ifNoneMatch") == row.version:
        return {"response": {"status": "304 Not Modified", "etag": etag(row.version)}}
    from .service import Result
    return _response(Result(200, row), base_url, with_resource=True)


def _read_in(s: Session, res_type: str, res_id: str):
    check_id(res_id)
    row = s.current(res_type, res_id)
    if row is None:
        raise error(404, "not-found", f"{res_type}/{res_id} is not known")
    if row.deleted:
        raise error(410, "deleted", f"{res_type}/{res_id} has been deleted")
    return row


# -- batch -------------------------------------------------------------------------------------
def _batch(service: "FHIRService", raw_entries: list, base_url: str) -> dict:
    out = []
    for i, raw in enumerate(raw_entries):
        try:
            e = Entry(i, raw, base_url)
            out.append(_run_entry(service, None, e, base_url, in_transaction=False))
        except FHIRError as exc:
            out.append({"response": {"status": str(exc.status), "outcome": exc.outcome}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}

