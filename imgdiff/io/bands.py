"""Recognising Sentinel-2 band names in file names and band descriptions."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError

# B1..B12 and B8A, optionally zero-padded, delimited by _ - . ( or the ends.
_BAND_IN_NAME = re.compile(r"(?:^|[_\-.\s(])(B(?:0?[1-9]|1[0-2]|8A))(?=$|[_\-.\s)(])", re.IGNORECASE)


#: Common names of the Sentinel-2 bands (STAC ``eo:common_name`` and Earth Search asset keys).
COMMON_NAMES = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12",
}


def normalise_band_name(name: str) -> str | None:
    """Canonical Sentinel-2 band name (``"B2"`` -> ``"B02"``, ``"b8a"`` -> ``"B8A"``,
    ``"nir"`` -> ``"B08"``, ``"swir16"`` -> ``"B11"``), or None."""
    m = re.fullmatch(r"\s*B(0?[1-9]|1[0-2]|8A)\s*", name, re.IGNORECASE)
    if not m:
        return COMMON_NAMES.get(name.strip().lower())
    num = m.group(1).upper()
    return "B8A" if num == "8A" else f"B{int(num):02d}"


def band_from_filename(stem: str) -> str | None:
    """The band a file holds, from its name without extension.

    Recognises ``B02``, ``T36SYC_20171003T081739_B02``, ``..._B02_10m``,
    Copernicus Browser exports ``..._Sentinel-2_L2A_B02_(Raw)`` and the like, else a common
    name as a whole token (``blue``, ``scene_nir``: :data:`COMMON_NAMES`).
    The last band-like token wins (tile ids never look like bands).
    """
    found = _BAND_IN_NAME.findall(stem)
    if found:
        return normalise_band_name(found[-1])
    # else a common name as a whole token (``blue.tif``, ``scene_nir.tif``; not ``reduced.tif``)
    tokens = [t for t in re.split(r"[_\-.\s()]+", stem.lower()) if t in COMMON_NAMES]
    return COMMON_NAMES[tokens[-1]] if tokens else None


def parse_bands(value: Any, where: str) -> tuple[str, ...] | None:
    """The ``bands`` entry of a watch manifest or claims file, normalised as everywhere in imgdiff.

    A list (or comma-separated string) of Sentinel-2 band names: ``B2`` -> ``B02``,
    ``nir`` -> ``B08``; None when empty. ``where`` names the file in error messages.

    Raises
    ------
    InputError
        A name that is not a Sentinel-2 band, or one band named twice (``B2, B02``: in a multi-band
        file's list every later band would be read under the wrong name).
    """
    if value is None or value == "" or value == []:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)):
        raise InputError(f"{where}: bands {value!r} is not a list; write bands: [B02, B03, B04, B08]")
    names: list[str] = []
    for b in parts:
        n = normalise_band_name(str(b)) if isinstance(b, (str, int)) and not isinstance(b, bool) else None
        if n is None:
            raise InputError(f"{where}: bands: {b!r} is not a Sentinel-2 band; use names like B02, B03, B04, B08")
        if n in names:
            raise InputError(f"{where}: bands: {n} is named twice; name each band once, in order")
        names.append(n)
    return tuple(names)
