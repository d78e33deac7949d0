"""Short ``repr`` of the result dataclasses, for notebooks and tracebacks.

A dataclass's generated ``repr`` prints every array it holds (a Scene's bands, a change map's
magnitude) and every tie point or detection: pages of numbers in a notebook cell. Here arrays
become ``<float32 array (rows, cols)>``, a CRS its ``EPSG:n`` code, and long tuples of records
their count, so one result prints on one or two lines. The values themselves stay on the
attributes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

#: Tuples and lists of records longer than this print as their count.
MAX_ITEMS = 3


def crs_text(crs: CRS | None) -> str:
    """``EPSG:32636`` for a CRS with an EPSG code, else its name; ``None`` for no CRS."""
    if crs is None:
        return "None"
    if not isinstance(crs, CRS):  # e.g. "EPSG:32636" given by hand
        return repr(crs)
    try:
        epsg = crs.to_epsg()
    except Exception:  # a repr must not fail
        epsg = None
    if epsg:
        return f"EPSG:{epsg}"
    text = crs.to_string()
    return text if len(text) <= 60 else text[:57] + "..."


def value_repr(v: Any) -> str:
    """A short text for one attribute value (arrays, CRSs and long record tuples summarised)."""
    if isinstance(v, np.ndarray):
        return f"<{v.dtype} array {v.shape}>"
    if isinstance(v, CRS):
        return crs_text(v)
    if isinstance(v, Affine):
        return "Affine(" + ", ".join(f"{c:.12g}" for c in v[:6]) + ")"
    if isinstance(v, Mapping) and any(isinstance(x, np.ndarray) for x in v.values()):
        return "{" + ", ".join(f"{k!r}: {value_repr(x)}" for k, x in v.items()) + "}"
    if isinstance(v, tuple | list) and len(v) > MAX_ITEMS and (dataclasses.is_dataclass(v[0]) or isinstance(v[0], dict)):
        return f"<{len(v)} {type(v[0]).__name__}>"
    return repr(v)


def short_repr(obj: Any) -> str:
    """``Name(field=value, ...)`` of a dataclass instance with :func:`value_repr` values."""
    parts = ", ".join(f"{f.name}={value_repr(getattr(obj, f.name))}"
                      for f in dataclasses.fields(obj) if f.repr)
    return f"{type(obj).__name__}({parts})"
