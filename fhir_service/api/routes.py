"""The FHIR RESTful API (http.html): one dispatcher over the /fhir URL space."""
from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import Response

from .. import jsonutil
from ..core import bundles
from ..core.capabilities import capability_statement
from ..core.operations import OperationCall, find as find_operation
from ..core.resource_utils import etag, http_date, instant_to_datetime, parse_etag, parse_http_date
from ..core.service import FHIRService, Result
from ..outcome import FHIRError, Issue, error, operation_outcome
from ..storage import Row
from .errors import outcome_response, unexpected_error_response
from .negotiation import FHIR_JSON, Prefer, body_kind, check_accept

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
# Requests that may block (database, validation) run here, off the event loop. A plain executor:
# Starlette's run_in_threadpool (anyio) costs about twice the CPU per hop (~80 against ~40 µs).
_WORKERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="fhir-request")
# Query parameters that shape the response, not the search.
FORMAT_PARAMS = {"_format", "_pretty"}


class Call:
    """What the dispatcher knows about one request."""

    def __init__(self, request: Request, body: bytes):
        self.request = request
        self.method = request.method
        self.headers = request.headers
        self.body = body
        scope = request.scope  # read directly: building request.url costs more than the rest of a read
        query = scope.get("query_string", b"").decode("latin-1")
        self.params = parse_qsl(query, keep_blank_values=True) if query else []
        settings = request.app.state.settings
        self.settings = settings
        self.service: FHIRService = request.app.state.service
        if settings.base_url:
            self.base_url = settings.base_url.rstrip("/")
        else:
            host = self.headers.get("host") or "%s:%s" % tuple(scope.get("server") or ("localhost", 80))
            self.base_url = f"{scope.get('scheme', 'http')}://{host}{settings.base_path}"
        prefer = self.headers.get("prefer")
        self.prefer = Prefer.parse(prefer) if prefer else Prefer()
        named = dict(self.params) if self.params else {}
        self.pretty = named.get("_pretty") == "true"
        self.format_param = named.get("_format")

    @property
    def query_string(self) -> str:
        return urlencode([(k, v) for k, v in self.params if k not in FORMAT_PARAMS])

    def json_body(self) -> Any:
        if not self.body:
            raise error(400, "required", "The request has no body")
        try:
            return jsonutil.loads(self.body, max_depth=self.settings.max_json_depth, refuse_nul=True)
        except jsonutil.JSONError as exc:
            raise error(400, "structure", f"The body is not valid JSON: {exc}")

    def respond(self, status: int, body: Any = None, headers: dict | None = None) -> Response:
        content = b"" if body is None else body if isinstance(body, bytes) else jsonutil.dumps_bytes(body, pretty=self.pretty)
        if self.method == "HEAD":
            content = b""
        return Response(content, status_code=status, media_type=FHIR_JSON if body is not None else None,
                        headers=headers)


def _row_headers(row: Row, base_url: str, *, location: bool = False) -> dict:
    h = {"ETag": etag(row.version), "Last-Modified": http_date(row.last_updated)}
    if location:
        h["Location"] = f"{base_url}/{row.res_type}/{row.res_id}/_history/{row.version}"
    return h


def _row_body(call: Call, row: Row) -> bytes:
    if call.pretty:
        return jsonutil.dumps_bytes(jsonutil.loads(row.content), pretty=True)
    return row.content.encode("utf-8")


def _write_response(call: Call, result: Result, *, location: bool) -> Response:
    """Answer a create/update/patch as ``Prefer: return=`` asks."""
    row = result.row
    headers = _row_headers(row, call.base_url, location=location) if row else {}
    if call.prefer.return_ == "minimal":
        return call.respond(result.status, None, headers)
    if call.prefer.return_ == "OperationOutcome":
        issues = result.issues or [Issue("information", "informational", "OK")]
        return call.respond(result.status, operation_outcome(issues), headers)
    return call.respond(result.status, _row_body(call, row) if row and row.content else None, headers)


def _not_modified(call: Call, row: Row) -> bool:
    inm = call.headers.get("if-none-match")
    if inm and parse_etag(inm, "If-None-Match") == row.version:
        return True
    ims = call.headers.get("if-modified-since")
    if ims:
        since = parse_http_date(ims)
        if since is not None:
            modified = instant_to_datetime(row.last_updated).replace(microsecond=0)
            return modified <= since.astimezone(timezone.utc)
    return False


def _read(call: Call, row: Row) -> Response:
    headers = _row_headers(row, call.base_url)
    if _not_modified(call, row):
        return call.respond(304, None, headers)
    return call.respond(200, _row_body(call, row), headers)


def _search_params(call: Call) -> list[tuple[str, str]]:
    """Query-string parameters, plus form-encoded ones for POST _search."""
    params = [(k, v) for k, v in call.params if k not in FORMAT_PARAMS]
    if call.method == "POST":
        if call.body:
            body_kind(call.headers.get("content-type"), allow_form=True)
            params += parse_qsl(call.body.decode("utf-8", "replace"), keep_blank_values=True)
    return params


def _operation(call: Call, name: str, level: str, rtype: str | None, rid: str | None) -> Response:
    service = call.service
    if rtype:
        service.check_type(rtype)
    op = find_operation(name, level, rtype, "GET" if call.method in ("GET", "HEAD") else "POST")
    body = None
    parameters: dict = {"resourceType": "Parameters", "parameter": []}
    if call.method == "POST" and call.body:
        body_kind(call.headers.get("content-type"))
        body = call.json_body()
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            parameters = {"resourceType": "Parameters", "parameter": list(body.get("parameter") or [])}
    for k, v in call.params:
        if k not in FORMAT_PARAMS:
            parameters["parameter"].append({"name": k, "valueString": v})
    status, out = op.handler(OperationCall(service, name, level, rtype, rid, parameters, body, call.base_url,
                                           call.method))
    return call.respond(status, out)


def dispatch(call: Call, parts: list[str]) -> Response:
    service = call.service
    m = call.method
    n = len(parts)
    check_accept(call.headers.get("accept"), call.format_param)

    # -- system level ---------------------------------------------------------------
    if n == 0:
        if m in ("GET", "HEAD"):
            if "_getpages" in dict(call.params):
                return call.respond(200, service.search_page(call.params, call.base_url))
            return call.respond(200, service.search(None, _search_params(call), call.base_url, strict=call.prefer.strict))
        if m == "POST":
            body_kind(call.headers.get("content-type"))
            return call.respond(200, bundles.process(service, call.json_body(), call.base_url))
        raise error(405, "not-supported", f"{m} is not allowed on the base URL")
    first = parts[0]
    if n == 1 and first == "metadata":
        if m not in ("GET", "HEAD"):
            raise error(405, "not-supported", "metadata is read-only")
        return call.respond(200, capability_statement(service, call.base_url))
    if n == 1 and first == "_history" and m in ("GET", "HEAD"):
        return call.respond(200, service.history(None, None, call.params, call.base_url))
    if n == 1 and first == "_search" and m == "POST":
        return call.respond(200, service.search(None, _search_params(call), call.base_url, strict=call.prefer.strict))
    if first.startswith("$"):
        if n != 1:
            raise error(404, "not-found", f"Unknown path /{'/'.join(parts)}")
        return _operation(call, first[1:], "system", None, None)

    # -- type level -----------------------------------------------------------------
    rtype = service.check_type(first)
    if n == 1:
        query = call.query_string
        if m in ("GET", "HEAD"):
            return call.respond(200, service.search(rtype, _search_params(call), call.base_url, strict=call.prefer.strict))
        if m == "POST":
            body_kind(call.headers.get("content-type"))
            result = service.create(rtype, call.json_body(), if_none_exist=call.headers.get("if-none-exist"))
            return _write_response(call, result, location=True)
        if not query:
            raise error(400 if m != "PUT" else 405, "required",
                        f"{m} on a type needs search criteria ([type]?[search]) or an id ([type]/[id])")
        if m == "PUT":
            body_kind(call.headers.get("content-type"))
            result = service.conditional_update(rtype, query, call.json_body(), if_match=call.headers.get("if-match"))
            return _write_response(call, result, location=True)
        if m == "DELETE":
            result = service.conditional_delete(rtype, query)
            return call.respond(200 if result.row else 204, operation_outcome(result.issues) if result.row else None,
                                {"ETag": etag(result.row.version)} if result.row else None)
        if m == "PATCH":
            return _patch(call, rtype, None, query)
    second = parts[1]
    if n == 2 and second == "_search" and m == "POST":
        return call.respond(200, service.search(rtype, _search_params(call), call.base_url, strict=call.prefer.strict))
    if n == 2 and second == "_history" and m in ("GET", "HEAD"):
        return call.respond(200, service.history(rtype, None, call.params, call.base_url))
    if second.startswith("$"):
        if n != 2:
            raise error(404, "not-found", f"Unknown path /{'/'.join(parts)}")
        return _operation(call, second[1:], "type", rtype, None)

    # -- instance level -------------------------------------------------------------
    rid = second
    if n == 2:
        if m in ("GET", "HEAD"):
            return _read(call, service.read(rtype, rid))
        if m == "PUT":
            body_kind(call.headers.get("content-type"))
            result = service.update(rtype, rid, call.json_body(), if_match=call.headers.get("if-match"))
            return _write_response(call, result, location=result.status == 201)
        if m == "PATCH":
            return _patch(call, rtype, rid, None)
        if m == "DELETE":
            result = service.delete(rtype, rid)
            return call.respond(200, operation_outcome(result.issues), {"ETag": etag(result.row.version)})
        raise error(405, "not-supported", f"{m} is not allowed on {rtype}/{rid}")
    third = parts[2]
    if third == "_history" and m in ("GET", "HEAD"):
        if n == 3:
            return call.respond(200, service.history(rtype, rid, call.params, call.base_url))
        if n == 4:
            return _read(call, service.vread(rtype, rid, parts[3]))
    if third.startswith("$") and n == 3:
        return _operation(call, third[1:], "instance", rtype, rid)
    if n == 3 and m in ("GET", "HEAD") or (n == 4 and parts[3] == "_search" and m == "POST"):
        # Compartment search: Patient/123/CarePlan (or "*" for every type in the compartment).
        target = None if third == "*" else service.check_type(third)
        return call.respond(200, service.search(target, _search_params(call), call.base_url,
                                                strict=call.prefer.strict, compartment=(rtype, rid)))
    raise error(404, "not-found", f"Unknown path /{'/'.join(parts)}")


def _patch(call: Call, rtype: str, rid: str | None, query: str | None) -> Response:
    kind = body_kind(call.headers.get("content-type"), allow_patch=True)
    document = call.json_body()
    if kind == "json":
        if not (isinstance(document, dict) and document.get("resourceType") == "Parameters"):
            raise error(400, "invalid", "A FHIRPath Patch body must be a Parameters resource "
                        "(or send application/json-patch+json)", "resourceType")
        kind = "fhirpath-patch"
    result = call.service.patch(rtype, rid, kind, document, if_match=call.headers.get("if-match"), query=query)
    return _write_response(call, result, location=False)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is None and "transfer-encoding" not in request.headers:
        return b""  # no body (a GET, a DELETE)
    if declared and declared.isdigit() and int(declared) > limit:
        raise error(413, "too-costly", f"The body is larger than this server's limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise error(413, "too-costly", f"The body is larger than this server's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _names_a_resource(parts: list[str]) -> bool:
    """[type]/[id]/...: neither an operation ($...) nor a special path (_history, _search)."""
    return len(parts) >= 2 and not parts[0].startswith(("$", "_")) and not parts[1].startswith(("$", "_"))


# Creates and updates smaller than this run their CPU work on the event loop (_write_on_loop).
# A bigger body may take long to validate, and would hold up every other request meanwhile.
LOOP_WRITE_MAX_BYTES = 64 * 1024


def _writes_on_loop(call: Call, parts: list[str]) -> bool:
    kinds = call.service.repo.loop_writes
    if not kinds or len(call.body) > LOOP_WRITE_MAX_BYTES:
        return False
    if call.method == "POST":  # create (not conditional)
        return "create" in kinds and len(parts) == 1 and not parts[0].startswith(("$", "_")) \
            and parts[0] != "metadata" and "if-none-exist" not in call.headers
    if call.method == "PUT":  # update by id
        return "update" in kinds and len(parts) == 2 and _names_a_resource(parts)
    return False


async def _write_on_loop(call: Call, parts: list[str]) -> Response:
    """A create or update where the backend's writes can be awaited (its group commit or write
    batches): its CPU work (parse, validate, index) runs right here on the event loop, and only
    the write is waited for. A hop to a worker thread and back would cost about as much CPU again, all of
    it under the GIL, and the request threads would contend for the GIL with the writer."""
    check_accept(call.headers.get("accept"), call.format_param)
    rtype = call.service.check_type(parts[0])
    body_kind(call.headers.get("content-type"))
    if call.method == "POST":
        result = await call.service.create_async(rtype, call.json_body())
        return _write_response(call, result, location=True)
    result = await call.service.update_async(rtype, parts[1], call.json_body(), if_match=call.headers.get("if-match"))
    return _write_response(call, result, location=result.status == 201)


def fhir_app(base: str):
    """The FHIR dispatcher as a plain ASGI app for everything at and below ``base``.

    FHIR routing is done by ``dispatch``; going through FastAPI's per-route dependency and
    validation machinery would only add cost to every request. It reads the settings and the
    service from ``scope["app"].state`` (see api.app.FrontDoor).
    """

    async def handle(request: Request, path: str) -> Response:
        try:
            body = await _read_body(request, request.app.state.settings.max_body_bytes)
            call = Call(request, body)
            parts = [p for p in path.split("/") if p]
            if call.method in ("GET", "HEAD") and _names_a_resource(parts) and \
                    (len(parts) == 2 or (len(parts) == 4 and parts[2] == "_history")):
                # A read or vread: awaited right here, no hop to the thread pool (how the backend
                # reads without holding up the event loop: Repository.current_async/version_async).
                check_accept(call.headers.get("accept"), call.format_param)
                if len(parts) == 2:
                    return _read(call, await call.service.read_async(parts[0], parts[1]))
                return _read(call, await call.service.vread_async(parts[0], parts[1], parts[3]))
            if _writes_on_loop(call, parts):
                return await _write_on_loop(call, parts)
            # (in a copy of this context, as Starlette does, so that no context variable set while
            # answering one request can leak into the next request on the same thread)
            return await asyncio.get_running_loop().run_in_executor(
                _WORKERS, contextvars.copy_context().run, dispatch, call, parts)
        except FHIRError as exc:
            return outcome_response(exc.status, exc.issues, exc.headers)
        except Exception as exc:  # answered here, so the connection always gets an OperationOutcome
            return unexpected_error_response(request, exc)

    async def app(scope, receive, send) -> None:
        # (api.app.FrontDoor hands it only HTTP requests at or below ``base``)
        if scope["method"] not in METHODS:
            response = outcome_response(405, [Issue("error", "not-supported", f"{scope['method']} is not supported")])
        else:
            response = await handle(Request(scope, receive), scope["path"][len(base):])
        await response(scope, receive, send)

    return app
