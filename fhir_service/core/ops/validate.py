"""$validate (R4 OperationDefinition Resource-validate): type and instance level.

The body is the resource itself, or a Parameters with ``resource``, ``mode`` and ``profile``;
``?profile=`` works too. The answer is always 200 with an OperationOutcome: a resource that
fails validation is the operation's successful result, not an error of the call.
"""
from __future__ import annotations

from ... import jsonutil
from ...outcome import Issue, error, operation_outcome
from ..operations import Operation, OperationCall, register

MODES = ("create", "update", "delete")


def _validate(call: OperationCall) -> tuple[int, dict]:
    service = call.service
    body = call.body
    resource = call.value("resource") if isinstance(body, dict) and body.get("resourceType") == "Parameters" else body
    mode = call.value("mode")
    profiles = [p.get("valueUri") or p.get("valueCanonical") for p in call.params("profile")]
    profiles = [p for p in profiles if p]
    if mode is not None and mode not in MODES:
        raise error(400, "value", f"mode must be one of {', '.join(MODES)}", "Parameters.parameter.where(name='mode')")
    if resource is None and call.resource_id:
        row = service.read(call.resource_type, call.resource_id)
        resource = jsonutil.loads(row.content)
    if mode == "delete":
        if not call.resource_id:
            raise error(400, "required", "mode=delete needs a resource id in the URL")
        service.read(call.resource_type, call.resource_id)  # 404/410 if it is not there
        return 200, operation_outcome([], text_if_empty="The resource may be deleted")
    if not isinstance(resource, dict):
        raise error(400, "required", "$validate needs a resource: the body, or a Parameters with a 'resource' part")
    issues: list[Issue] = []
    if resource.get("resourceType") != call.resource_type:
        issues.append(Issue("error", "invalid", f"resourceType {resource.get('resourceType')!r} does not match "
                                                f"the URL's type {call.resource_type!r}", ["resourceType"]))
    if mode == "update" and call.resource_id and resource.get("id") != call.resource_id:
        issues.append(Issue("error", "invalid", "For mode=update the resource id must match the URL", [f"{call.resource_type}.id"]))
    if not issues:
        from ...validation import validate_resource
        issues = validate_resource(resource, service.definitions, profiles=profiles,
                                   resolver=service.resolve_canonical, unknown_profile=service.settings.unknown_profile)
    return 200, operation_outcome(issues, text_if_empty="Validation found no problems")


register(Operation("validate", _validate, frozenset({"type", "instance"}), get_allowed=True,
                   definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
                   documentation="Validate a resource against R4 and its profiles"))
