"""Recognising Sentinel-2 band names in file names and band descriptions."""

from __future__ import annotations

import re

# B1..B12 and B8A, optionally zero-padded, delimited by _ - . ( or the ends.
_BAND_IN_NAME = re.compile(r"(?:^|[_\-.\s(])(B(?:0?[1-9]|1[0-2]|8A))(?=$|[_\-.\s)(])", re.IGNORECASE)


def normalise_band_name(name: str) -> str | None:
    """Canonical Sentinel-2 band name (``"B2"`` -> ``"B02"``, ``"b8a"`` -> ``"B8A"``), or None."""
    m = re.fullmatch(r"\s*B(0?[1-9]|1[0-2]|8A)\s*", name, re.IGNORECASE)
    if not m:
        return None
    num = m.group(1).upper()
    return "B8A" if num == "8A" else f"B{int(num):02d}"


def band_from_filename(stem: str) -> str | None:
    """The band a file holds, from its name without extension.

    Recognises ``B02``, ``T36SYC_20171003T081739_B02``, ``..._B02_10m``,
    Copernicus Browser exports ``..._Sentinel-2_L2A_B02_(Raw)`` and the like.
    The last band-like token wins (tile ids never look like bands).
    """
    found = _BAND_IN_NAME.findall(stem)
    return normalise_band_name(found[-1]) if found else None
