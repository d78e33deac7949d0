"""Product metadata and acquisition dates of a scene.

:func:`find_product_metadata` and :func:`parse_product_metadata` read a SAFE product's
``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``: date, processing baseline, quantification and per-band
offsets. Without one, the acquisition date comes from the raster's tags (:func:`date_from_tags`),
an OSCD ``meta.json`` sidecar (:func:`date_from_sidecar`), or a file or folder name
(:func:`date_from_text`).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from .layout import BandSource, one_line


def find_product_metadata(sources: Sequence[BandSource]) -> Path | None:
    for parent in sources[0].path.parents:
        hits = sorted(parent.glob("MTD_MSIL*.xml"))
        if hits:
            return hits[0]
        if parent.suffix.upper() == ".SAFE":
            return None
    return None


def parse_product_metadata(mtd: Path) -> dict[str, Any]:
    """Date, processing baseline, quantification and per-band offsets of a SAFE product."""
    try:
        root = ET.parse(mtd).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"{mtd}: unreadable product metadata ({one_line(e)})") from None
    out: dict[str, Any] = {"offsets": {}}
    for el in root.iter():
        tag = el.tag.split("}")[-1]
        if tag == "PRODUCT_START_TIME" and el.text:
            out["date"] = _dt.date.fromisoformat(el.text[:10])
        elif tag == "PROCESSING_BASELINE" and el.text:
            out["baseline"] = el.text.strip()
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and el.text:
            out["quantification"] = float(el.text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and el.text:
            out["offsets"][int(el.get("band_id", "-1"))] = float(el.text)
    return out


_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")
_DATE_TAGS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "DATATAKE_SENSING_START", "DATE")


def date_from_text(text: str) -> _dt.date | None:
    """First plausible acquisition date (YYYY-MM-DD or YYYYMMDD) in a name, or None."""
    for m in _DATE_IN_NAME.finditer(text):
        try:
            return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
    return None


def date_from_tags(tags: dict[str, str]) -> _dt.date | None:
    for key in _DATE_TAGS:
        if key in tags and tags[key]:
            d = date_from_text(tags[key])
            if d:
                return d
    return None


def date_from_sidecar(source: Path) -> _dt.date | None:
    """OSCD keeps dates in ``<city>/meta.json`` under the keys ``before`` / ``after``."""
    folder = source.parent
    meta = folder.parent / "meta.json"
    if not meta.is_file():
        return None
    try:
        entry = json.loads(meta.read_text()).get(folder.name, {})
        return _dt.date.fromisoformat(entry["date"][:10]) if isinstance(entry, dict) else None
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _safe_band_id(name: str) -> int:
    from ..scene import BAND_ORDER

    return BAND_ORDER.index(name) if name in BAND_ORDER else -1
