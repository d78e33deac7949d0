"""Digital numbers to reflectance: the scaling rules of one scene.

:func:`choose_radiometry` decides each band's :class:`Radiometry` (``reflectance = dn * scale +
offset``) from what the band, its product metadata, its file name and its date say;
:func:`to_reflectance` applies it. Once a scene is read, levels that rule the decision out
correct it: :func:`drop_impossible_offset` (numbers below the baseline-04 offset the date
suggests) and :func:`infer_raw_scaling` (renamed Copernicus Browser raw exports, reflectance
x 65535); :func:`rescaled` converts bands again with another scaling.
``scene.meta["radiometry"]`` records each band's scaling and why.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..scene import Scene

#: Products acquired from this date on carry the +1000 DN offset (processing baseline 04.00).
BASELINE_04_DATE = _dt.date(2022, 1, 25)
#: Reflectance x 65535: the scaling of Copernicus Browser "Raw" band exports.
RAW_EXPORT_SCALE = 1.0 / 65535.0
#: Integer bands whose 99th percentile (the highest over the bands) exceeds this many DN cannot be
#: reflectance x 10000 (2.0, brighter than any cloud or snow); without a name or metadata saying otherwise
#: they are read as reflectance x 65535. Measured: the highest band p99 is 2,200-4,800 DN on the ten
#: OSCD pairs and the aircraft_s2sim chips (x 10000), 24,500-33,100 on the seven sen2ships ports (x 65535).
RAW_LEVEL_DN = 20000.0
#: Digital numbers from here up are saturated (a cloud drawn white); they do not count in that percentile.
SATURATED_DN = 65000.0
#: Float bands holding digital numbers keep the product's saturation value (65535): from here up
#: they are saturated (the DN 65534 of :func:`saturation_level`).
SATURATED_FLOAT_DN = 65534.0
#: Reflectance from here up counts as saturated (no surface or cloud is that bright), or from the
#: reflectance of DN 65534 when that is lower (:func:`saturation_level`).
SATURATION_REFLECTANCE = 1.6
_DEFAULT_RULE = "DN/10000"
_FLOAT_RULE = "float data taken as reflectance"
_RAW_NAME_RULE = "Copernicus Browser raw export"
#: Float bands whose 99th percentile exceeds this are digital numbers, not reflectance.
FLOAT_DN_LEVEL = 2.0


@dataclass(frozen=True)
class Radiometry:
    """Conversion of digital numbers to reflectance: ``reflectance = dn * scale + offset``."""

    scale: float
    offset: float
    source: str  # where the numbers came from, for the report


def _baseline_number(baseline: str | None) -> float | None:
    try:
        return float(baseline) if baseline else None
    except ValueError:
        return None


def choose_radiometry(
    dtype: str,
    *,
    band_scale: float = 1.0,
    band_offset: float = 0.0,
    source_name: str = "",
    date: _dt.date | None = None,
    baseline: str | None = None,
    quantification: float | None = None,
    dn_offset: float | None = None,
) -> Radiometry:
    """Decide how digital numbers of one band become reflectance.

    The first rule that applies wins: scale/offset stored with the band (GDAL
    metadata); SAFE metadata (quantification and ``RADIO_ADD_OFFSET`` /
    ``BOA_ADD_OFFSET``); float data (already reflectance); Copernicus Browser
    "Raw" exports (reflectance x 65535); otherwise Level-1C/2A DN = reflectance x
    10000, with the -1000 DN offset of processing baseline 04.00 and later
    (from the baseline where known, else from the acquisition date >= 2022-01-25).
    """
    if (band_scale, band_offset) != (1.0, 0.0):
        return Radiometry(band_scale, band_offset, "band metadata scale/offset")
    if quantification:
        off = dn_offset or 0.0
        return Radiometry(1.0 / quantification, off / quantification, "SAFE metadata")
    if np.dtype(dtype).kind == "f":
        return Radiometry(1.0, 0.0, _FLOAT_RULE)
    if "(Raw)" in source_name:
        return Radiometry(RAW_EXPORT_SCALE, 0.0, f"{_RAW_NAME_RULE}: reflectance x 65535")
    number = _baseline_number(baseline)
    if number is not None:
        new = number >= 4.0
        why = f"processing baseline {baseline}"
    elif date is not None:
        new = date >= BASELINE_04_DATE
        why = f"acquired {date.isoformat()} ({'on/after' if new else 'before'} 2022-01-25)"
    else:
        new, why = False, "date unknown: no baseline offset assumed"
    return Radiometry(1e-4, -0.1 if new else 0.0, f"{_DEFAULT_RULE}{' - 0.1' if new else ''}, {why}")


def by_default_rule(radiometry: dict[str, Any]) -> bool:
    """Whether a band's recorded radiometry (``scene.meta["radiometry"][band]``) is only the
    default reflectance x 10000 convention (no metadata, name or caller said how to scale it)."""
    return str(radiometry.get("source", "")).startswith(_DEFAULT_RULE)


def to_reflectance(dn: np.ndarray, rad: Radiometry, nodata: float | None, *, zeros: str = "nan") -> np.ndarray:
    """DN array -> float32 reflectance, NaN where no-data.

    Parameters
    ----------
    dn : ndarray
        Digital numbers of one band.
    rad : Radiometry
        ``reflectance = dn * scale + offset``.
    nodata : float or None
        The band's declared nodata value (NaN where it occurs).
    zeros : {"nan", "keep"}
        What DN 0 of an integer band is: ``"nan"`` no-data in this band alone (for a band read
        on its own), ``"keep"`` reflectance 0 (never below), leaving the decision to
        :func:`zero_fill` over all bands. A declared nodata of 0 follows the same rule.
    """
    if zeros not in ("nan", "keep"):
        raise ValueError(f"zeros must be 'nan' or 'keep', not {zeros!r}")
    out = dn.astype(np.float32)
    out *= np.float32(rad.scale)
    out += np.float32(rad.offset)
    integer = dn.dtype.kind in "ui"
    # integer DN times a finite scale plus a finite offset are finite
    finite = integer and math.isfinite(float(rad.scale)) and math.isfinite(float(rad.offset))
    bad = None if finite else ~np.isfinite(out)
    if integer:
        z = dn == 0
        if zeros == "nan":
            bad = z if bad is None else bad | z
        elif z.any():
            out[z] = max(float(rad.offset), 0.0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        if not (zeros == "keep" and nodata == 0):
            bad = dn == nodata if bad is None else bad | (dn == nodata)
    if bad is not None and bad.any():
        out[bad] = np.nan
    return out


def saturation_level(scale: float | None, offset: float = 0.0) -> float:
    """Reflectance from which a band counts as saturated: :data:`SATURATION_REFLECTANCE`, or the
    reflectance of DN 65534 under ``reflectance = dn * scale + offset`` when that is lower (a
    reflectance x 65535 export saturates at 1.0). Without a scale, :data:`SATURATION_REFLECTANCE`."""
    if not scale:
        return SATURATION_REFLECTANCE
    return min(SATURATION_REFLECTANCE, (65535 - 1) * float(scale) + float(offset))


def saturated(dn: np.ndarray, reflectance: np.ndarray, rad: Radiometry) -> np.ndarray | None:
    """Saturated pixels of one band: digital numbers at the top of the data type (:func:`saturated_dn`)
    or reflectance at or above :func:`saturation_level` of ``rad``; None when there are none.

    Parameters
    ----------
    dn : ndarray
        Digital numbers as stored in the band's file.
    reflectance : ndarray of float32
        ``dn`` read with ``rad`` (:func:`to_reflectance`), same shape, NaN where no data.
    rad : Radiometry
    """
    top = saturated_dn(dn)
    with np.errstate(invalid="ignore"):
        bright = reflectance >= np.float32(saturation_level(rad.scale, rad.offset))
    sat = bright if top is None else bright | top
    return sat if sat.any() else None


def saturated_dn(dn: np.ndarray) -> np.ndarray | None:
    """Pixels of one band at the top of its data type's range: the product's saturation value.

    Sentinel-2 products write a saturated pixel as 65535 (uint16). The top two values of an
    integer type count (65534 and 65535, the DN of :func:`saturation_level`); float bands from
    :data:`SATURATED_FLOAT_DN` up (digital numbers stored as float; float reflectance never
    gets there).

    Parameters
    ----------
    dn : ndarray
        Digital numbers of one band, as stored in its file.

    Returns
    -------
    ndarray of bool or None
        Same shape as ``dn``; None when no pixel is saturated.
    """
    if dn.dtype.kind in "ui":
        top = np.iinfo(dn.dtype).max - 1
    elif dn.dtype.kind == "f":
        top = SATURATED_FLOAT_DN
    else:
        return None
    with np.errstate(invalid="ignore"):
        sat = dn >= top
    return sat if sat.any() else None


def rescaled(scene: Scene, bands: Sequence[str], rad: Radiometry) -> Scene:
    """The scene with ``bands`` converted again from their digital numbers with ``rad``.

    The digital numbers are recovered from the reflectance and the scaling recorded in
    ``scene.meta["radiometry"]`` (exact up to float32 rounding); the record is updated.
    """
    meta = dict(scene.meta)
    record = {k: dict(v) for k, v in (meta.get("radiometry") or {}).items()}
    arrays = dict(scene.bands)
    for b in bands:
        old = record[b]
        dn = (arrays[b].astype(np.float64) - float(old["offset"])) / float(old["scale"])
        arrays[b] = (dn * rad.scale + rad.offset).astype(np.float32)
        record[b] = {"scale": rad.scale, "offset": rad.offset, "source": rad.source}
    meta["radiometry"] = record
    return replace(scene, bands=arrays, meta=meta)


def infer_raw_scaling(scene: Scene) -> Scene:
    """Read integer bands as reflectance x 65535 when their levels rule out x 10000.

    Applies only when every band was scaled by the default convention (nothing said
    otherwise) and the highest 99th percentile over the bands exceeds :data:`RAW_LEVEL_DN`
    digital numbers: then the file is most likely a renamed Copernicus Browser raw export.
    Otherwise the scene is returned unchanged.
    """
    record = scene.meta.get("radiometry") or {}
    if not record or not all(by_default_rule(r) for r in record.values()) or not scene.valid.any():
        return scene
    p99 = 0.0
    for b, r in record.items():
        top = RAW_LEVEL_DN * float(r["scale"]) + float(r["offset"])  # the level in reflectance
        sat = SATURATED_DN * float(r["scale"]) + float(r["offset"])  # saturated pixels (a white cloud) left out
        p99 = max(p99, (_high_p99(scene, [b], top, sat) - float(r["offset"])) / float(r["scale"]))
    if p99 <= RAW_LEVEL_DN:
        return scene
    rad = Radiometry(RAW_EXPORT_SCALE, 0.0, f"inferred from levels: 99th percentile {p99:.0f} DN cannot be reflectance "
                     "x 10000, read as reflectance x 65535 (Copernicus Browser raw export scaling)")
    return rescaled(scene, list(record), rad)


#: Share of the valid B02 (else B03) pixels below DN 1000 from which the numbers cannot carry the
#: baseline-04 offset (their reflectance would be negative with it).
IMPOSSIBLE_OFFSET_SHARE = 0.01


def below_dn1000(scene: Scene, band: str) -> float:
    """Share of a DN/10000 band's valid pixels whose digital number lies below 1000 (reflectance
    below 0.1 without the baseline-04 offset, below 0 with it), whatever offset it was read with."""
    offset = float((scene.meta.get("radiometry") or {}).get(band, {}).get("offset", 0.0))
    return float(np.mean(scene.bands[band][scene.valid] - offset < 0.1))


def drop_impossible_offset(scene: Scene) -> Scene:
    """Read the bands without the baseline-04 offset when their numbers cannot carry it.

    The -1000 DN offset is assumed from the acquisition date alone (no metadata says it). With
    it, blue and green reflectance of water and land is positive, so their numbers lie above 1000;
    when 1 % or more of the valid B02 (else B03) pixels lie below, the numbers were written without
    the offset (a tool or a conversion that removed it) and the offset is dropped for every band.
    """
    record = scene.meta.get("radiometry") or {}
    dated = [b for b, r in record.items() if by_default_rule(r) and float(r["offset"]) != 0.0 and "acquired" in r["source"]]
    probe = next((b for b in ("B02", "B03") if b in dated), None)
    if probe is None or len(dated) != len(record) or not scene.valid.any():
        return scene
    below = below_dn1000(scene, probe)
    if below < IMPOSSIBLE_OFFSET_SHARE:
        return scene
    rad = Radiometry(1e-4, 0.0, f"DN/10000 without offset: {below:.0%} of {probe} lies below DN 1000, impossible with "
                     "the baseline-04 offset the acquisition date suggests")
    return rescaled(scene, dated, rad)


def _high_p99(scene: Scene, bands: Sequence[str], above: float, below: float = math.inf) -> float:
    """The highest 99th percentile over ``bands`` (valid pixels below ``below``, in the bands' own units);
    bands whose maximum is not above ``above`` count as 0 (the usual case, decided without a percentile)."""
    p99 = 0.0
    for b in bands:
        band = scene.bands[b]
        if not np.nanmax(band) > above:
            continue
        v = band[scene.valid]
        v = v[:: max(1, v.size // 200_000)]  # an even subsample: the decision needs no more
        v = v[v < below]
        if v.size:
            p99 = max(p99, float(np.percentile(v, 99)))
    return p99
