"""Dispatch from the walker to the rule modules (filled in as they are written)."""
from __future__ import annotations


def after_children(w, node, type_code, obj, path, base, layout) -> None:
    pass


def element(w, node, type_code, val, path, base, ext=None) -> None:
    pass


def slices(w, node, type_code, items, path, base) -> None:
    pass


def resource(w, obj, model, path, base) -> None:
    pass
