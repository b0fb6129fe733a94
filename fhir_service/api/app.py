"""The FastAPI application: start-up wiring and error handling.

All FHIR routes go through one dispatcher (routes.py) because FHIR's URL space ([type],
[type]/[id], [type]/[id]/_history/[vid], $operations, compartments) is easier to route
exactly by hand than by overlapping path templates.
"""
from __future__ import annotations

import gc

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Settings
from ..outcome import Issue
from .errors import outcome_response, unexpected_error_response


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


def create_app(settings: Settings | None = None, service=None) -> "FrontDoor":
    settings = settings or Settings()
    app = FastAPI(title="IMP²ART FHIR service", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.service = service or build_service(settings)
    app.state.service.repo.start_background_work()
    # What start-up built (the R4 definitions and what is derived from them) lives as long as
    # the process: keep it out of the garbage collector's full collections, which would walk
    # it all each time and hold up every request meanwhile (~45 ms here).
    gc.collect()  # (what is already garbage is freed first, not frozen)
    gc.freeze()

    from . import routes
    from ..core import ops  # noqa: F401  (registers the core operations)
    try:
        from ..sdc import operations as _sdc_ops  # noqa: F401
    except ImportError:
        pass

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "processing"
        return outcome_response(exc.status_code, [Issue("error", code, str(exc.detail))])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return unexpected_error_response(request, exc)

    @app.on_event("shutdown")
    def close() -> None:
        app.state.service.repo.close()

    base = settings.base_path.rstrip("/")
    return FrontDoor(app, routes.fhir_app(base), base)


class FrontDoor:
    """Hands requests under the FHIR base straight to the FHIR dispatcher; the rest to FastAPI.

    The dispatcher answers every error itself, so FastAPI's middleware and routing would only
    add cost to each FHIR request. FastAPI keeps start-up/shutdown and every other path.
    """

    def __init__(self, app: FastAPI, fhir, base: str):
        self.app = app
        self._fhir = fhir
        self._base = base

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == self._base or path.startswith(self._base + "/"):
                scope["app"] = self.app  # what Starlette would set: Request.app reads it
                await self._fhir(scope, receive, send)
                return
        await self.app(scope, receive, send)
