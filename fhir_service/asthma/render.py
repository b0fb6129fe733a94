"""The patient-readable action plan: an XHTML narrative and a stand-alone page for phones and print.

The zone wording comes from the plan template (PlanDefinition) already applied to the
patient's numbers; this module only lays it out. Every piece of text is escaped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from html import escape

# Section headings of the page (layout, not clinical wording).
LABELS = {
    "for": "For",
    "written": "Written on",
    "review_by": "Review this plan with your GP or asthma nurse by",
    "medicines": "My asthma medicines",
    "peak_flow": "My peak flow",
    "best": "My best peak flow is",
    "triggers": "Things that can make my asthma worse",
    "contacts": "My contacts",
}

# Zones are coloured in the order the template gives them: everyday, worse, attack.
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:18px;line-height:1.45;
margin:0;padding:12px;color:#111;background:#fff}
h2{font-size:1.5em;margin:.2em 0}h3{font-size:1.2em;margin:.8em 0 .3em}
ul{padding-left:1.2em;margin:.3em 0}li{margin:.25em 0}
.zone{border-left:10px solid #999;border-radius:6px;padding:4px 10px;margin:12px 0;background:#f7f7f7}
.zone:nth-of-type(1){border-color:#1b7f3b;background:#eaf6ee}
.zone:nth-of-type(2){border-color:#c77700;background:#fff4e0}
.zone:nth-of-type(3){border-color:#c62828;background:#fdeaea}
.zones{margin:0}.lmin{font-weight:bold}
@media print{body{font-size:12pt}.zone{break-inside:avoid}}
"""


@dataclass
class Medicine:
    name: str
    role: str | None = None
    doses: list[str] = field(default_factory=list)


@dataclass
class Zone:
    heading: str
    steps: list[str]


@dataclass
class Contact:
    role: str
    name: str
    phone: str | None = None


@dataclass
class PlanView:
    title: str
    patient: str | None
    plan_type: str | None
    written: str | None  # ISO date
    review_by: str | None  # ISO date
    medicines: list[Medicine]
    personal_best: str | None  # e.g. "460 L/min"
    zones: list[Zone]
    triggers: list[str]
    contacts: list[Contact]


def readable_date(iso: str | None) -> str | None:
    if not iso:
        return None
    try:
        d = date.fromisoformat(iso[:10])
    except ValueError:
        return iso
    return f"{d.day} {d:%B %Y}"


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>" if items else ""


def narrative(view: PlanView) -> str:
    """The CarePlan.text.div (FHIR XHTML)."""
    e = escape
    parts = [f"<h2>{e(view.title)}</h2>"]
    about = []
    if view.patient:
        about.append(f"{LABELS['for']} {e(view.patient)}.")
    if view.plan_type:
        about.append(f"{e(view.plan_type)}.")
    if view.written:
        about.append(f"{LABELS['written']} {e(readable_date(view.written))}.")
    if about:
        parts.append(f"<p>{' '.join(about)}</p>")
    if view.review_by:
        parts.append(f"<p class=\"review\"><b>{LABELS['review_by']} {e(readable_date(view.review_by))}.</b></p>")
    if view.medicines:
        parts.append(f"<h3>{LABELS['medicines']}</h3>")
        parts.append(_list([f"<b>{e(m.name)}</b>" + (f" ({e(m.role)})" if m.role else "") +
                            "".join(f": {e(d)}" if i == 0 else f". {e(d)}" for i, d in enumerate(m.doses))
                            for m in view.medicines]))
    if view.personal_best:
        parts.append(f"<h3>{LABELS['peak_flow']}</h3><p>{LABELS['best']} "
                     f"<span class=\"lmin\">{e(view.personal_best)}</span>.</p>")
    parts.append("<div class=\"zones\">")
    for zone in view.zones:
        parts.append(f"<div class=\"zone\"><h3>{e(zone.heading)}</h3>{_list([e(s) for s in zone.steps])}</div>")
    parts.append("</div>")
    if view.triggers:
        parts.append(f"<h3>{LABELS['triggers']}</h3>{_list([e(t) for t in view.triggers])}")
    if view.contacts:
        parts.append(f"<h3>{LABELS['contacts']}</h3>")
        parts.append(_list([f"{e(c.role)}: {e(c.name)}" + (f", <a href=\"tel:{e(c.phone.replace(' ', ''))}\">"
                                                           f"{e(c.phone)}</a>" if c.phone else "")
                            for c in view.contacts]))
    return "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + "".join(parts) + "</div>"


def page(view: PlanView, div: str | None = None) -> str:
    """A stand-alone HTML page around the narrative (what the DocumentReference carries)."""
    div = div or narrative(view)
    return ("<!DOCTYPE html><html lang=\"en-GB\"><head><meta charset=\"utf-8\"/>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
            f"<title>{escape(view.title)}</title><style>{_STYLE}</style></head><body>{div}</body></html>")
