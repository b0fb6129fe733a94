"""The FastAPI application: start-up wiring and error handling.

All FHIR routes go through one dispatcher (routes.py) because FHIR's URL space ([type],
[type]/[id], [type]/[id]/_history/[vid], $operations, compartments) is easier to route
exactly by hand than by overlapping path templates.
"""
from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .. import jsonutil
from ..config import Settings
from ..outcome import FHIRError, Issue, operation_outcome
from .negotiation import FHIR_JSON

log = logging.getLogger("fhir_service")


def outcome_response(status: int, issues: list[Issue], headers: dict | None = None) -> Response:
    return Response(jsonutil.dumps_bytes(operation_outcome(issues)), status_code=status,
                    media_type=FHIR_JSON, headers=headers)


def build_service(settings: Settings):
    """Definitions (fetched on first start), the repository with its schema, and the profiles."""
    from ..core.service import FHIRService
    from ..core.startup import install_profiles
    from ..definitions import get_definitions
    from ..storage import open_repository
    definitions = get_definitions(settings.package_cache, settings.profiles_dir)
    repo = open_repository(settings.database)
    repo.create_schema()
    service = FHIRService(repo, definitions, settings)
    install_profiles(service)
    return service


def create_app(settings: Settings | None = None, service=None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="IMP²ART FHIR service", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.service = service or build_service(settings)

    from . import routes
    from ..core import ops  # noqa: F401  (registers the core operations)
    try:
        from ..sdc import operations as _sdc_ops  # noqa: F401
    except ImportError:
        pass
    routes.install(app)

    @app.exception_handler(FHIRError)
    async def fhir_error(request: Request, exc: FHIRError):
        return outcome_response(exc.status, exc.issues, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # Log where it failed, never the message: it could quote resource content.
        log.error("unexpected %s at %s %s\n%s", type(exc).__name__, request.method, request.url.path,
                  "".join(traceback.format_tb(exc.__traceback__)))
        return outcome_response(500, [Issue("fatal", "exception", "The server met an unexpected error; it has been logged")])

    @app.on_event("shutdown")
    def close() -> None:
        app.state.service.repo.close()

    return app
