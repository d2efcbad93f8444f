"""Argument checks shared by the kernel wrappers."""
from __future__ import annotations

from typing import Any

from dtcore.errors import InvalidParameterTypeError


def byte_view(obj: Any, name: str) -> memoryview:
    """A contiguous byte view of ``obj`` without copying it."""
    if isinstance(obj, str):
        raise InvalidParameterTypeError(f"{name}: expected a bytes-like object, got str (encode it)")
    try:
        view = memoryview(obj)
    except TypeError:
        raise InvalidParameterTypeError(
            f"{name}: expected a bytes-like object, got {type(obj).__name__}") from None
    if not view.c_contiguous:
        raise InvalidParameterTypeError(f"{name}: the buffer must be contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view
