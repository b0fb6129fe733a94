"""Content negotiation and request headers (http.html#mime-type, #prefer)."""
from __future__ import annotations

from dataclasses import dataclass

from ..outcome import error

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "xml", "text/xml"}
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def check_accept(accept: str | None, format_param: str | None) -> None:
    """Raise 406 unless the client accepts JSON. ``_format`` overrides the Accept header."""
    if format_param:
        fmt = _media(format_param)
        if fmt in JSON_TYPES:
            return
        raise error(406, "not-supported", f"_format {format_param!r} is not supported: this server speaks JSON "
                    "(application/fhir+json)", "_format")
    if not accept:
        return
    for part in accept.split(","):
        media = _media(part)
        q = 1.0
        for param in part.split(";")[1:]:
            k, _, v = param.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 1.0
        if q > 0 and (media in JSON_TYPES or media in ("*/*", "application/*")):
            return
        if q > 0 and media == "text/html":
            return  # browsers: they get JSON
    raise error(406, "not-supported", f"Cannot satisfy Accept: {accept}; this server produces application/fhir+json",
                "Accept")


def body_kind(content_type: str | None, *, allow_patch: bool = False, allow_form: bool = False) -> str:
    """Classify a request body's Content-Type: "json", "json-patch" or "form" (else 415)."""
    media = _media(content_type or "")
    if media in JSON_TYPES:
        return "json"
    if allow_patch and media == JSON_PATCH:
        return "json-patch"
    if allow_form and media == FORM:
        return "form"
    if media in XML_TYPES:
        raise error(415, "not-supported", "XML is not supported yet: send application/fhir+json", "Content-Type")
    raise error(415, "not-supported", f"Unsupported Content-Type {content_type!r}: send application/fhir+json",
                "Content-Type")


@dataclass
class Prefer:
    return_: str = "representation"  # minimal | representation | OperationOutcome
    strict: bool = False  # handling=strict

    @classmethod
    def parse(cls, header: str | None) -> "Prefer":
        p = cls()
        for part in (header or "").split(","):
            for item in part.split(";"):
                k, _, v = item.strip().partition("=")
                v = v.strip().strip('"')
                if k.strip() == "return" and v in ("minimal", "representation", "OperationOutcome"):
                    p.return_ = v
                elif k.strip() == "handling":
                    p.strict = v == "strict"
        return p
