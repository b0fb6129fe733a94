"""A seeded, reproducible asthma practice population for search benchmarks.

About 21 resources per patient: Patient (valid NHS number), asthma Condition, three
MedicationRequests, peak-flow Observations over two years, ACT score Observations,
completed review QuestionnaireResponses, CarePlans (the older one revoked and replaced) and
their Goals. Practices (Organization) and GPs (Practitioner) are shared.

    python bench/generate_population.py --patients 100 --seed 1 > population.ndjson
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import date, datetime, timedelta, timezone
from typing import Iterator

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PATIENTS_PER_PRACTICE = 5000
FAMILIES = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
            "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke",
            "Patel", "Khan", "Singh", "Murphy", "O'Brien", "Campbell", "Stewart", "MacDonald", "Scott", "Reid",
            "Müller", "Núñez", "Lefèvre", "Kowalski", "Nowak", "Ahmed", "Ali", "Hussain", "Begum", "Chen"]
GIVEN = ["Oliver", "George", "Harry", "Jack", "Amelia", "Olivia", "Isla", "Ava", "Emily", "Sophie", "Mohammed",
         "Noah", "Leo", "Freya", "Chloé", "Zoë", "Aoife", "Eilidh", "Callum", "Fraser", "Priya", "Aisha", "Ewan"]
TOWNS = ["Edinburgh", "Glasgow", "Leith", "Dundee", "Stirling", "Perth", "Livingston", "Musselburgh"]
PREVENTERS = [("ICS beclometasone 100 micrograms", "320134004"), ("ICS budesonide 200 micrograms", "320175003"),
              ("ICS/formoterol (MART)", "407787006")]
RELIEVERS = [("Salbutamol 100 micrograms inhaler", "320151005"), ("Terbutaline 500 micrograms", "320191006")]


def nhs_number(rng: random.Random) -> str:
    """A random NHS number that passes the Modulus 11 check."""
    while True:
        digits = [rng.randint(0, 9) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1))) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def _ref(rtype: str, rid: str) -> dict:
    return {"reference": f"{rtype}/{rid}"}


def _dt(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def practices(n_patients: int) -> Iterator[dict]:
    for i in range((n_patients + PATIENTS_PER_PRACTICE - 1) // PATIENTS_PER_PRACTICE):
        yield {"resourceType": "Organization", "id": f"prac-{i}", "active": True,
               "identifier": [{"system": ODS, "value": f"S{10000 + i}"}],
               "name": f"{TOWNS[i % len(TOWNS)]} Medical Practice {i}"}
        yield {"resourceType": "Practitioner", "id": f"gp-{i}", "active": True,
               "name": [{"family": FAMILIES[i % len(FAMILIES)], "given": ["Dr"], "prefix": ["Dr"]}]}


def patient_bundle(i: int, seed: int, today: date = date(2025, 6, 1)) -> list[dict]:
    """The ~21 resources of patient number ``i`` (deterministic for (i, seed))."""
    rng = random.Random(seed * 1_000_003 + i)
    pid = f"pat-{i}"
    practice = i // PATIENTS_PER_PRACTICE
    subject = _ref("Patient", pid)
    family, given = rng.choice(FAMILIES), rng.choice(GIVEN)
    born = today - timedelta(days=rng.randint(6 * 365, 85 * 365))
    out: list[dict] = [{
        "resourceType": "Patient", "id": pid, "active": True,
        "identifier": [{"system": NHS, "value": nhs_number(rng)}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": rng.choice(["male", "female"]), "birthDate": born.isoformat(),
        "address": [{"city": rng.choice(TOWNS), "postalCode": f"EH{rng.randint(1, 55)} {rng.randint(1, 9)}AB"}],
        "generalPractitioner": [_ref("Organization", f"prac-{practice}")],
        "managingOrganization": _ref("Organization", f"prac-{practice}"),
    }]
    onset = born + timedelta(days=rng.randint(365, max(366, (today - born).days - 30)))
    out.append({
        "resourceType": "Condition", "id": f"{pid}-asthma",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": SCT, "code": "195967001", "display": "Asthma"}], "text": "Asthma"},
        "subject": subject, "onsetDateTime": onset.isoformat(),
    })
    prev, rel = rng.choice(PREVENTERS), rng.choice(RELIEVERS)
    for k, (label, code, status) in enumerate([(prev[0], prev[1], "active"), (rel[0], rel[1], "active"),
                                               (rng.choice(PREVENTERS)[0], "320134004", "stopped")]):
        out.append({
            "resourceType": "MedicationRequest", "id": f"{pid}-med{k}", "status": status, "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": SCT, "code": code, "display": label}], "text": label},
            "subject": subject, "authoredOn": (today - timedelta(days=rng.randint(1, 700))).isoformat(),
            "requester": _ref("Practitioner", f"gp-{practice}"),
        })
    best = rng.randint(250, 650)
    for k in range(8):
        when = datetime(2023, 6, 1, tzinfo=timezone.utc) + timedelta(days=k * 90 + rng.randint(0, 60),
                                                                       minutes=rng.randint(0, 1439))
        out.append({
            "resourceType": "Observation", "id": f"{pid}-pef{k}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": SCT, "code": "18491006", "display": "Peak expiratory flow rate"}]},
            "subject": subject, "effectiveDateTime": _dt(when),
            "valueQuantity": {"value": int(best * rng.uniform(0.45, 1.0)), "unit": "L/min", "system": UCUM,
                              "code": "L/min"},
        })
    for k in range(2):
        when = datetime(2024, 1, 10, tzinfo=timezone.utc) + timedelta(days=k * 365 + rng.randint(0, 100))
        score = rng.randint(8, 25)
        out.append({
            "resourceType": "Observation", "id": f"{pid}-act{k}", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "82668-5", "display": "ACT total score"}]},
            "subject": subject, "effectiveDateTime": _dt(when),
            "valueQuantity": {"value": score, "unit": "{score}", "system": UCUM, "code": "{score}"},
        })
        out.append({
            "resourceType": "QuestionnaireResponse", "id": f"{pid}-review{k}", "status": "completed",
            "questionnaire": "https://fhir.imp2art.org/Questionnaire/asthma-review|1.0.0",
            "subject": subject, "authored": _dt(when), "author": _ref("Practitioner", f"gp-{practice}"),
            "item": [{"linkId": "act-total", "answer": [{"valueInteger": score}]}],
        })
    for k in range(2):
        created = today - timedelta(days=(1 - k) * 365 + rng.randint(0, 100))
        plan = {
            "resourceType": "CarePlan", "id": f"{pid}-plan{k}", "status": "revoked" if k == 0 else "active",
            "intent": "plan",
            "category": [{"coding": [{"system": LOINC, "code": "69981-9", "display": "Asthma action plan"}]}],
            "subject": subject, "created": created.isoformat(), "period": {"start": created.isoformat()},
            "addresses": [_ref("Condition", f"{pid}-asthma")], "author": _ref("Practitioner", f"gp-{practice}"),
            "goal": [_ref("Goal", f"{pid}-goal{k}")],
        }
        if k == 1:
            plan["replaces"] = [_ref("CarePlan", f"{pid}-plan0")]
        out.append(plan)
        out.append({
            "resourceType": "Goal", "id": f"{pid}-goal{k}",
            "lifecycleStatus": "cancelled" if k == 0 else "active",
            "description": {"text": "Peak flow above 80% of personal best"}, "subject": subject,
            "target": [{"measure": {"coding": [{"system": SCT, "code": "401163005"}]},
                        "detailRange": {"low": {"value": 80, "unit": "%", "system": UCUM, "code": "%"}}}],
        })
    return out


def population(n_patients: int, seed: int = 1) -> Iterator[dict]:
    yield from practices(n_patients)
    for i in range(n_patients):
        yield from patient_bundle(i, seed)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    for res in population(args.patients, args.seed):
        sys.stdout.write(json.dumps(res, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
