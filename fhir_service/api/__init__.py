"""HTTP only: routing, content negotiation, headers and errors as OperationOutcomes."""
