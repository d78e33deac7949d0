"""One scaling for both dates of a pair.

:func:`harmonise_scaling` reads the two dates of a compared pair alike where only one of them
says how its digital numbers scale: a Copernicus Browser raw export (reflectance x 65535) beside
a renamed copy of it, x 10000 numbers under a raw export's names, and baseline-04 offsets
guessed differently on the two dates (:func:`_consistent_offsets`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..scene import Scene
from .scaling import (
    _DEFAULT_RULE,
    _RAW_NAME_RULE,
    IMPOSSIBLE_OFFSET_SHARE,
    RAW_EXPORT_SCALE,
    Radiometry,
    below_dn1000,
    by_default_rule,
    choose_radiometry,
    drop_impossible_offset,
    rescaled,
)

#: Ratio of band medians between two dates read alike when one holds reflectance x 65535 and the other
#: x 10000 numbers: 6.55 times the dates' gain (0.6-1.6 allowed) ...
RAW_FACTOR_RANGE = (6.5536 * 0.6, 6.5536 * 1.6)
#: ... and the same in every band: the largest ratio at most this many times the smallest.
RAW_FACTOR_SPREAD = 1.5


def harmonise_scaling(before: Scene, after: Scene) -> tuple[Scene, Scene]:
    """Give both dates of a pair one scaling where only one of them says what it is.

    Where the two dates' guessed baseline-04 offsets differ (a date unknown on one of them, the
    offset dropped as impossible on one only), both are read alike, as their levels say
    (:func:`_consistent_offsets`).
    A band read as reflectance x 65535 (a raw export's name, or :func:`infer_raw_scaling`)
    on one date and by the default x 10000 convention on the other (a renamed copy of the
    same export, darker than :data:`RAW_LEVEL_DN`) is read as x 65535 on both when its band
    medians are 6.55 times its partner's, by one factor in every such band
    (:data:`RAW_FACTOR_RANGE`, :data:`RAW_FACTOR_SPREAD`: it holds x 65535 numbers too). Both
    dates named as raw exports, one of them 6.55 times darker by one factor in every band: that
    one holds x 10000 numbers under the export's names and is read so. Any other combination is
    left as it is: a copy truly converted to x 10000 (as bright as its partner), and a date
    brighter by an offset rather than a factor (an L1C date, top of atmosphere, beside a
    surface-reflectance export: its blue over water 3-4 times brighter, its red far less; haze;
    sun glint).

    A band read from a coarser grid (20 or 60 m) and rescaled here is resampled again from its file
    where the new scaling moves which of its pixels are saturated (:func:`imgdiff.io.read.resampled_again`):
    a pixel saturated only at the new scaling stays on the pixels it covers, as :func:`imgdiff.read_scene`
    reads it at that scaling.
    """
    from .read import resampled_again

    hb, ha = _harmonised(before, after)
    return resampled_again(hb, before), resampled_again(ha, after)


def _harmonised(before: Scene, after: Scene) -> tuple[Scene, Scene]:
    """:func:`harmonise_scaling` on the pixels as read (the coarser bands not resampled again)."""
    rb, ra = before.meta.get("radiometry") or {}, after.meta.get("radiometry") or {}

    def raw(r: dict[str, Any]) -> bool:
        return abs(float(r.get("scale", 0.0)) - RAW_EXPORT_SCALE) < 1e-12

    def factor_apart(bright: Scene, dark: Scene, bands: Sequence[str]) -> bool:
        # the same place on two dates, one holding x 65535 numbers and the other x 10000 but read alike:
        # one is 6.55 times brighter, by the same factor in every band (up to the dates' gain); haze, glint
        # or a top-of-atmosphere date add an offset instead, which raises dark bands by far more than
        # bright ones; a copy really converted to x 10000 is about as bright as its partner
        if not bands or not bright.valid.any() or not dark.valid.any():
            return False
        r = []
        for b in bands:
            mb, md = (float(np.nanmedian(s.bands[b][s.valid])) for s in (bright, dark))
            if not (mb > 0 and md > 0):
                return False
            r.append(mb / md)
        return all(RAW_FACTOR_RANGE[0] <= v <= RAW_FACTOR_RANGE[1] for v in r) and max(r) / min(r) <= RAW_FACTOR_SPREAD

    rad = Radiometry(RAW_EXPORT_SCALE, 0.0, "as the other date of the pair: reflectance x 65535 (Copernicus Browser "
                     "raw export scaling)")
    common = [b for b in rb if b in ra]
    # a renamed copy holds x 65535 numbers in every band: one band brighter than its partner (blue
    # over water on a top-of-atmosphere L1C date against a surface-reflectance export) is no copy
    cand_b = [b for b in common if by_default_rule(rb[b]) and raw(ra[b])]
    cand_a = [b for b in common if by_default_rule(ra[b]) and raw(rb[b])]
    fix_b = cand_b if factor_apart(before, after, cand_b) else []
    fix_a = cand_a if factor_apart(after, before, cand_a) else []
    before, after = (rescaled(before, fix_b, rad) if fix_b else before), (rescaled(after, fix_a, rad) if fix_a else after)
    # both dates named as raw exports, one of them 6.55 times darker in every band: a script wrote reflectance
    # x 10000 numbers under the export's names on that date
    named = [b for b in common if raw(rb[b]) and raw(ra[b]) and str(rb[b]["source"]).startswith(_RAW_NAME_RULE)
             and str(ra[b]["source"]).startswith(_RAW_NAME_RULE)]

    def as_x10000(dark: Scene) -> Scene:
        r10 = choose_radiometry("uint16", date=dark.date)
        return drop_impossible_offset(rescaled(dark, named, Radiometry(
            r10.scale, r10.offset, f"{r10.source}; named as a raw export but 6.55 times darker than the other date: "
            "x 10000 numbers")))

    if factor_apart(after, before, named):
        before = as_x10000(before)
    elif factor_apart(before, after, named):
        after = as_x10000(after)
    return _consistent_offsets(before, after)


def _consistent_offsets(before: Scene, after: Scene) -> tuple[Scene, Scene]:
    """The pair with the baseline-04 offset read alike on both dates where nothing but a guess decides it.

    Only the default DN/10000 reading guesses the -1000 DN offset: from the acquisition date
    (none when it is unknown), dropped when the numbers cannot carry it (1 % or more of B02
    below DN 1000, :func:`drop_impossible_offset`); a processing baseline or metadata states it,
    and a stated reading is never changed (its partner may follow it).
    Such guesses can differ between the dates of one place: an undated copy of a dated scene
    reads 0.1 brighter than it; of two chips in date-named folders, the darker one drops the offset
    and the other keeps it, 0.1 darker. Where the guessed offsets of a band differ, three readings
    are weighed: as read, without the offset on both dates, with it on both (a date whose numbers
    cannot carry it cannot take it); the one whose band medians lie closest between the dates
    (summed absolute log ratios) is kept. As read can win: an L1C date (top of atmosphere, with the
    offset) beside an undated surface-reflectance chip (without it) is read right as it is.
    """
    rb, ra = before.meta.get("radiometry") or {}, after.meta.get("radiometry") or {}

    def guessed(r: dict[str, Any]) -> bool:
        return by_default_rule(r) and "processing baseline" not in r["source"]

    def x10000(r: dict[str, Any]) -> bool:  # DN/10000, with or without the offset, however decided
        return abs(float(r["scale"]) - 1e-4) < 1e-12 and float(r["offset"]) in (0.0, -0.1)

    def dated(r: dict[str, Any]) -> bool:  # the offset the acquisition date gives, kept (not dropped by the 1 % rule)
        return "acquired" in r["source"]

    # two known dates on either side of 2022-01-25 differ in their offsets rightly: only a guess on one
    # date (no date known, or the offset dropped by its numbers) is weighed against the other date
    bands = [b for b in rb if b in ra and x10000(rb[b]) and x10000(ra[b]) and (guessed(rb[b]) or guessed(ra[b]))
             and float(rb[b]["offset"]) != float(ra[b]["offset"]) and not (dated(rb[b]) and dated(ra[b]))]
    if not bands or not before.valid.any() or not after.valid.any():
        return before, after

    def dn_offset_free(scene: Scene, b: str, r: dict[str, Any]) -> float:  # median reflectance without offset
        return float(np.nanmedian(scene.bands[b][scene.valid])) - float(r["offset"])

    def can_carry(scene: Scene, record: dict[str, Any]) -> bool:
        probe = next((b for b in ("B02", "B03") if b in record), None)
        return probe is None or below_dn1000(scene, probe) < IMPOSSIBLE_OFFSET_SHARE

    med = {b: (dn_offset_free(before, b, rb[b]), dn_offset_free(after, b, ra[b])) for b in bands}

    def apart(off_b: dict[str, float], off_a: dict[str, float]) -> float:
        total = 0.0
        for b, (mb, ma) in med.items():
            x, y = mb + off_b[b], ma + off_a[b]
            total += abs(math.log(x / y)) if x > 0 and y > 0 else math.inf
        return total

    as_read = ({b: float(rb[b]["offset"]) for b in bands}, {b: float(ra[b]["offset"]) for b in bands})
    options = [as_read]
    for off in (0.0, -0.1):  # one reading for both dates; an offset stated by metadata or baseline stays
        stated = all(float(r[b]["offset"]) == off for r in (rb, ra) for b in bands if not guessed(r[b]))
        if stated and (off == 0.0 or (can_carry(before, rb) and can_carry(after, ra))):
            options.append(({b: off for b in bands}, {b: off for b in bands}))
    def overruled(o: tuple[dict[str, float], dict[str, float]]) -> int:  # readings by a known date changed
        return sum(o[k][b] != float(r[b]["offset"]) and "acquired" in r[b]["source"]
                   for k, r in ((0, rb), (1, ra)) for b in bands)

    # closest levels first; on a tie (two copies of one scene) the reading its known date gives, then as read
    off_b, off_a = min(options, key=lambda o: (round(apart(*o), 4), overruled(o)))
    if (off_b, off_a) == as_read:
        return before, after

    def reread(scene: Scene, record: dict[str, Any], offsets: dict[str, float]) -> Scene:
        for off in (0.0, -0.1):
            change = [b for b in bands if offsets[b] == off and float(record[b]["offset"]) != off]
            if change:
                scene = rescaled(scene, change, Radiometry(
                    1e-4, off, f"{_DEFAULT_RULE}{' - 0.1' if off else ''}: the other date's levels (the two dates' "
                    "guessed baseline-04 offsets differed; this reading puts their medians closest)"))
        return scene

    return reread(before, rb, off_b), reread(after, ra, off_a)
