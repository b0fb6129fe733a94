"""Structured Data Capture (SDC): $assemble, $populate, $extract and PlanDefinition/$apply.

Generic SDC behaviour lives here; anything specific to the asthma review is in
``fhir_service.asthma`` and is wired in by ``operations.py``.
"""
