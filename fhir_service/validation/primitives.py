"""FHIR primitive types: the JSON type each must have and the lexical rules of its value.

Messages follow the HL7 validator's wording where it has one, so integrators who know that
tool recognise them. ``check_primitive`` returns ``None`` when the value is fine, else a list
of ``(severity, code, text)``.
"""
from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TZ = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
DATE_RE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
DATETIME_RE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T" + _TIME + _TZ + r")?)?)?")
# dateTime with a time but no zone: recognised so we can say what is wrong.
_DATETIME_NO_TZ = re.compile(_YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T" + _TIME)
INSTANT_RE = re.compile(_YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T" + _TIME + _TZ)
TIME_RE = re.compile(_TIME)
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
CODE_RE = re.compile(r"[^\s]+( [^\s]+)*")
OID_RE = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BASE64_RE = re.compile(r"(\s*([0-9a-zA-Z+/=]){4}\s*)+")
_SPACE = re.compile(r"\s")
DECIMAL_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")

PRIMITIVE_TYPES = frozenset({
    "boolean", "integer", "decimal", "string", "markdown", "code", "id", "uri", "url", "canonical",
    "oid", "uuid", "base64Binary", "instant", "date", "dateTime", "time", "positiveInt",
    "unsignedInt", "xhtml", "integer64",
})
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
_INT32 = (-2147483648, 2147483647)

# FHIRPath system types used in the R4 snapshots for id/url/value elements.
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}

JSON_KIND = {t: "string" for t in PRIMITIVE_TYPES}
JSON_KIND.update({"boolean": "boolean", "integer": "integer", "positiveInt": "integer",
                  "unsignedInt": "integer", "decimal": "number"})


def json_type_name(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (Decimal, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return "object"


def _json_ok(kind: str, value) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, Decimal, float)) and not isinstance(value, bool)


def _real_date(text: str) -> bool:
    """The regexes accept 2021-02-30; the calendar does not."""
    if len(text) >= 10:
        try:
            _dt.date(int(text[:4]), int(text[5:7]), int(text[8:10]))
        except ValueError:
            return False
    return True


def check_primitive(type_code: str, value) -> list[tuple[str, str, str]] | None:
    kind = JSON_KIND.get(type_code, "string")
    if not _json_ok(kind, value):
        shown = value if not isinstance(value, str) else f'"{value}"'
        article = "an" if kind == "integer" else "a"
        return [("error", "structure", f"Error parsing JSON: the primitive value must be {article} {kind} "
                 f"(found {json_type_name(value)} {shown!s})")]
    checker = _CHECKS.get(type_code)
    if checker is None:
        return None
    return checker(value)


def _err(text: str, code: str = "invalid") -> list:
    return [("error", code, text)]


def _check_string(v: str):
    if v == "":
        return _err("@value cannot be empty")
    if len(v) > 1048576:
        return _err("value is longer than permitted maximum length of 1 MB (1048576 bytes)")
    return None


def _check_markdown(v: str):
    return _err("@value cannot be empty") if v == "" else None


def _check_code(v: str):
    if v == "":
        return _err("@value cannot be empty")
    if not CODE_RE.fullmatch(v):
        return _err(f"The code '{v}' is not valid (whitespace rules)")
    return None


def _check_id(v: str):
    if not ID_RE.fullmatch(v):
        if len(v) > 64:
            return _err(f"id value '{v}' is not valid (Too long ({len(v)} chars))")
        return _err(f"id value '{v}' is not valid")
    return None


def _check_uri(v: str):
    if v == "":
        return _err("@value cannot be empty")
    if _SPACE.search(v):
        return _err(f"URI values cannot have whitespace ('{v}')")
    if v.startswith("urn:oid:") and not OID_RE.fullmatch(v):
        return _err(f"OIDs must be valid ({v})")
    if v.startswith("urn:uuid:") and not UUID_RE.fullmatch(v):
        return _err(f"UUIDs must be valid and lowercase ({v[9:]})")
    return None


def _check_oid(v: str):
    if not v.startswith("urn:oid:"):
        return _err("OIDs must start with urn:oid:")
    return None if OID_RE.fullmatch(v) else _err(f"OIDs must be valid ({v})")


def _check_uuid(v: str):
    if not v.startswith("urn:uuid:"):
        return _err("UUIDs must start with urn:uuid:")
    return None if UUID_RE.fullmatch(v) else _err(f"UUIDs must be valid and lowercase ({v[9:]})")


def _check_date(v: str):
    if not DATE_RE.fullmatch(v) or not _real_date(v):
        return _err(f"Not a valid date format: '{v}'")
    return None


def _check_datetime(v: str):
    if DATETIME_RE.fullmatch(v):
        return None if _real_date(v) else _err(f"Not a valid date/time ({v})")
    if _DATETIME_NO_TZ.fullmatch(v):
        return _err("If a date has a time, it must have a timezone")
    return _err(f"Not a valid date/time format: '{v}'")


def _check_instant(v: str):
    if INSTANT_RE.fullmatch(v) and _real_date(v):
        return None
    if _DATETIME_NO_TZ.fullmatch(v):
        return _err("If a date has a time, it must have a timezone")
    return _err(f"Not a valid instant format: '{v}'")


def _check_time(v: str):
    return None if TIME_RE.fullmatch(v) else _err(f"Not a valid time format: '{v}'")


def _check_base64(v: str):
    compact = "".join(v.split())
    if not compact or len(compact) % 4 or not BASE64_RE.fullmatch(v):
        return _err(f"The value '{v[:40]}' is not a valid Base64 value")
    return None


def _check_integer(v: int):
    if not _INT32[0] <= v <= _INT32[1]:
        return _err(f"The value '{v}' is outside the range of reasonable integer values")
    return None


def _check_positive(v: int):
    return _check_integer(v) or (None if v > 0 else _err(f"The value '{v}' must be greater than 0 (positiveInt)"))


def _check_unsigned(v: int):
    return _check_integer(v) or (None if v >= 0 else _err(f"The value '{v}' must be 0 or greater (unsignedInt)"))


def _check_decimal(v):
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return _err(f"The value '{v}' is not a valid decimal")
    if isinstance(v, Decimal) and not v.is_finite():
        return _err(f"The value '{v}' is not a valid decimal")
    return None


def _check_xhtml(v: str):
    return _err("@value cannot be empty") if v == "" else None


_CHECKS = {
    "string": _check_string, "markdown": _check_markdown, "code": _check_code, "id": _check_id,
    "uri": _check_uri, "url": _check_uri, "canonical": _check_uri, "oid": _check_oid, "uuid": _check_uuid,
    "date": _check_date, "dateTime": _check_datetime, "instant": _check_instant, "time": _check_time,
    "base64Binary": _check_base64, "integer": _check_integer, "positiveInt": _check_positive,
    "unsignedInt": _check_unsigned, "decimal": _check_decimal, "xhtml": _check_xhtml,
}


def check_resource_id(v) -> str | None:
    """The HL7 validator's resource-id message (``None`` when fine)."""
    if not isinstance(v, str):
        return "Invalid Resource id: must be a string"
    if len(v) > 64:
        return f"Invalid Resource id: Too long ({len(v)} chars)"
    if not ID_RE.fullmatch(v):
        return f"Invalid Resource id: Invalid Characters ('{v}')"
    return None
