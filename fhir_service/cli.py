"""`fhir-service`: serve, load, definitions, validate, package.

Every option can also come from a FHIR_* environment variable (e.g. FHIR_DATABASE, FHIR_PORT).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .config import Settings


def _settings(database: str | None = None) -> Settings:
    settings = Settings()
    if database:
        settings.database = database
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "FHIR"})
@click.version_option(package_name="imp2art-fhir-service")
def main() -> None:
    """IMP²ART FHIR R4 service for asthma supported self-management."""


@main.command()
@click.option("--host", default=lambda: Settings().host, show_default="127.0.0.1", help="Interface to listen on.")
@click.option("--port", type=int, default=lambda: Settings().port, show_default="8080", help="Port to listen on.")
@click.option("--database", default=lambda: Settings().database, show_default="sqlite:///./data/fhir.db",
              help="sqlite:///PATH or postgresql://user@host:port/db")
@click.option("--workers", type=int, default=lambda: Settings().workers, show_default="1",
              help="Server processes (all share the database).")
def serve(host: str, port: int, database: str, workers: int) -> None:
    """Serve the FHIR API at http://HOST:PORT/fhir."""
    import uvicorn
    os.environ["FHIR_DATABASE"] = database  # worker processes build their settings from the environment
    from .definitions.fetch import fetch_core, is_present
    settings = _settings(database)
    if not is_present(settings.package_cache):
        fetch_core(settings.package_cache)
    click.echo(f"serving FHIR R4 at http://{host}:{port}{settings.base_path} ({database.split('?')[0]})", err=True)
    uvicorn.run("fhir_service.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--database", default=lambda: Settings().database, show_default="sqlite:///./data/fhir.db",
              help="sqlite:///PATH or postgresql://user@host:port/db")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def load(paths: tuple[Path, ...], database: str, quiet: bool) -> None:
    """Load resources and bundles (files or folders of .json) into the database."""
    from .api.app import build_service
    from .loader import load_paths
    service = build_service(_settings(database))
    try:
        report = load_paths(service, paths, progress=not quiet)
    finally:
        service.repo.close()
    click.echo(f"loaded {report.resources} resources from {report.files} files"
               + (f"; {len(report.failures)} failed" if report.failures else ""), err=True)
    for name, message in report.failures:
        click.echo(f"  {name}: {message}", err=True)
    sys.exit(1 if report.failures else 0)


@main.command()
@click.option("--database", default=lambda: Settings().database, show_default="sqlite:///./data/fhir.db",
              help="sqlite:///PATH or postgresql://user@host:port/db")
def reindex(database: str) -> None:
    """Re-extract the search index of every resource (after adding a SearchParameter)."""
    from tqdm import tqdm

    from . import search
    from .api.app import build_service
    service = build_service(_settings(database))
    service.sync_conformance()
    bar = tqdm(unit="resource", desc="reindexing")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    try:
        count = search.reindex(service.repo, service.definitions, progress=progress)
    finally:
        bar.close()
        service.repo.close()
    click.echo(f"reindexed {count} resources", err=True)


@main.group()
def definitions() -> None:
    """The R4 core definitions (hl7.fhir.r4.core#4.0.1)."""


@definitions.command("fetch")
def definitions_fetch() -> None:
    """Download the core package into the FHIR package cache if it is missing."""
    from .definitions.fetch import core_package_dir, fetch_core
    settings = Settings()
    fetch_core(settings.package_cache)
    click.echo(str(core_package_dir(settings.package_cache)))


def _register_optional() -> None:
    """Commands that live with their layer (validation, content packaging)."""
    try:
        from .validation.cli import validate_command
        main.add_command(validate_command, "validate")
    except ImportError:
        pass
    try:
        from .definitions.package_export import package_command
        main.add_command(package_command, "package")
    except ImportError:
        pass


_register_optional()

if __name__ == "__main__":
    main()
