"""``fhir-service validate``: validate files offline against R4, profiles/ and --ig material.

Imports stay inside the command so that ``fhir-service --help`` and a cold validation stay fast.
"""
from __future__ import annotations

import sys

import click


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--ig", "igs", multiple=True, type=click.Path(exists=True),
              help="A conformance resource file or folder (profiles, ValueSets, Questionnaires, ...). Repeatable.")
@click.option("--profile", "profiles", multiple=True, help="Also validate against this profile (canonical URL).")
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="text", show_default=True)
@click.option("--unknown-profile", type=click.Choice(["warning", "error"]), default="warning", show_default=True,
              help="What a meta.profile the validator does not know gives.")
def validate_command(files, igs, profiles, fmt, unknown_profile):
    """Validate FHIR R4 JSON resources; exit status 1 when any error is found."""
    from pathlib import Path

    from .. import jsonutil
    from ..definitions import get_definitions
    from ..outcome import Issue, operation_outcome
    from . import validate_resource

    defs = get_definitions()
    for ig in igs:
        defs.add_path(Path(ig))
    any_error = False
    for name in files:
        try:
            resource = jsonutil.loads(Path(name).read_bytes())
            issues = validate_resource(resource, defs, profiles=profiles, unknown_profile=unknown_profile)
        except jsonutil.JSONError as exc:
            issues = [Issue("fatal", "structure", f"Unable to parse JSON: {exc}")]
        except OSError as exc:
            issues = [Issue("fatal", "exception", f"Unable to read the file: {exc}")]
        errors = sum(i.is_error for i in issues)
        any_error = any_error or bool(errors)
        if fmt == "json":
            click.echo(jsonutil.dumps(operation_outcome(issues), pretty=True))
        else:
            warnings = sum(i.severity == "warning" for i in issues)
            click.echo(f"{name}: {'FAILED' if errors else 'OK'} ({errors} error(s), {warnings} warning(s))")
            for i in issues:
                where = ", ".join(i.expression) or "-"
                click.echo(f"  {i.severity:<11} {where}: {i.text}")
    sys.exit(1 if any_error else 0)


if __name__ == "__main__":
    validate_command()
