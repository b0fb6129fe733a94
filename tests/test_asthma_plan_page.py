"""The patient-readable plan (the DocumentReference's HTML) in a real headless browser at phone size."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from test_sdc_support import ReviewForm, json_of, out_param, practice  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python 'playwright' package is not installed "
                                   "(pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _plan_page(client) -> tuple[str, dict]:
    """Review Sarah Anderson (MART, personal best recorded today) and fetch her plan's document."""
    form = ReviewForm(client)
    response, _ = form.populate("Patient/sarah-anderson")
    form.complete(response, {
        "plan-provide": [True], "rcp3-sleep": [False], "rcp3-daytime": [False], "rcp3-activities": [False],
        "pef-uses": [True], "pef-best": [500], "plan-worse-percent": [80], "plan-attack-percent": [50],
        "closing-plan-outcome": [{"system": "http://snomed.info/sct", "code": "810901000000102"}]})
    r = client.post("QuestionnaireResponse", json=response)
    assert r.status_code == 201, r.text
    r = client.post(f"QuestionnaireResponse/{json_of(r)['id']}/$extract")
    assert r.status_code == 200, r.text
    r = client.post("", json=out_param(json_of(r), "return"))
    assert r.status_code == 200, r.text
    doc_id = next(e["response"]["location"].split("/")[1] for e in json_of(r)["entry"]
                  if e["response"].get("location", "").startswith("DocumentReference/"))
    doc = json_of(client.get(f"DocumentReference/{doc_id}"))
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "text/html"
    plan_definition = json_of(client.get("PlanDefinition?url=https://fhir.imp2art.org/PlanDefinition/"
                                         "asthma-action-plan-mart"))["entry"][0]["resource"]
    return base64.b64decode(attachment["data"]).decode("utf-8"), plan_definition


def test_the_plan_reads_on_a_phone(practice, browser):  # noqa: F811
    html, plan_definition = _plan_page(practice)
    page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page.set_content(html, wait_until="load")
        zones = page.locator(".zone")
        assert zones.count() == 3
        colours = set()
        for i, action in enumerate(plan_definition["action"]):
            zone = zones.nth(i)
            zone.scroll_into_view_if_needed()
            assert zone.is_visible()
            assert zone.locator("h3").inner_text().strip() == action["title"]
            box = zone.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
            colours.add(zone.evaluate("el => getComputedStyle(el).borderLeftColor"))
        assert len(colours) == 3  # green, amber and red are told apart
        # thresholds in L/min from Sarah's personal best of 500: 80% -> 400, 50% -> 250
        for text, zone_index in (("400 L/min or more", 0), ("below 400 L/min (80% of your best)", 1),
                                 ("below 250 L/min (50% of your best)", 2)):
            hit = zones.nth(zone_index).get_by_text(text, exact=False)
            assert hit.count() == 1 and hit.first.is_visible(), text
        assert page.get_by_text("500 L/min").first.is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        assert "10 puffs" not in page.inner_text("body")  # MART wording only
    finally:
        page.close()
