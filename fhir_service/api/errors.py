"""Errors as OperationOutcome responses."""
from __future__ import annotations

import logging
import traceback

from fastapi import Request
from fastapi.responses import Response

from .. import jsonutil
from ..outcome import Issue, operation_outcome
from .negotiation import FHIR_JSON

log = logging.getLogger("fhir_service")


def outcome_response(status: int, issues: list[Issue], headers: dict | None = None) -> Response:
    return Response(jsonutil.dumps_bytes(operation_outcome(issues)), status_code=status,
                    media_type=FHIR_JSON, headers=headers)


def unexpected_error_response(request: Request, exc: BaseException) -> Response:
    # Log where it failed, never the message: it could quote resource content.
    log.error("unexpected %s at %s %s\n%s", type(exc).__name__, request.method, request.url.path,
              "".join(traceback.format_tb(exc.__traceback__)))
    return outcome_response(500, [Issue("fatal", "exception", "The server met an unexpected error; it has been logged")])
