"""The baseline: a trivial FastAPI endpoint returning a small JSON body, served like the real one."""
from fastapi import FastAPI

app = FastAPI()


@app.get("/fhir/Patient/baseline")
async def read() -> dict:
    return {"resourceType": "Patient", "id": "baseline", "active": True}
