"""CodeSystems and ValueSets in memory: membership, validate-code, displays (offline)."""
from .service import CodeResult, Terminology

__all__ = ["Terminology", "CodeResult"]
