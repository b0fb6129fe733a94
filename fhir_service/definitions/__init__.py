"""The R4 core package and the project's profiles: fetching, loading and indexing by canonical URL."""
from .registry import Definitions, get_definitions

__all__ = ["Definitions", "get_definitions"]
