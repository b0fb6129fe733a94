# The IMP²ART FHIR service on port 8080, with the R4 core definitions baked in.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    FHIR_PACKAGE_CACHE=/opt/fhir/packages \
    FHIR_PROFILES_DIR=/app/profiles \
    FHIR_DATABASE=sqlite:////data/fhir.db \
    FHIR_HOST=0.0.0.0 \
    FHIR_PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_service ./fhir_service
RUN pip install . && fhir-service definitions fetch
COPY profiles ./profiles
COPY examples ./examples

VOLUME ["/data"]
EXPOSE 8080
CMD ["sh", "-c", "fhir-service load examples/ --quiet && exec fhir-service serve --host 0.0.0.0 --port 8080"]
