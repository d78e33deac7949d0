"""The report of a claims check (``imgdiff verify``): JSON, Markdown, HTML, GeoJSON, change.tif.

``report.json`` layout (``schema: "imgdiff.verify"``, ``schema_version`` below; bump the major
number on any incompatible change)::

    schema, schema_version, imgdiff_version
    claims_file                    path of the claims file as given; (1.6) null in the report of
                                   ``imgdiff compare --site/--zones`` (:func:`imgdiff.claims.survey`: no claims)
    inputs.before|after            source, date, bands of each scene as read, radiometry as used;
                                   (1.5) path_radiance: band -> reflectance the vessel detector took off that
                                   date's scene before scoring (imgdiff.detect.vessels.path_radiance; 0 on
                                   surface-reflectance scenes), null when vessels were not looked for
    dates                          before, after (ISO), days_between
    grid                           CRS, transform, width, height, bounds, pixel size (m)
    coregistration                 dx, dy (px; after = before + shift), dx_m, dy_m, uncertainty_px, reliability,
                                   method, failed (the verdicts' rule: reliability below
                                   imgdiff.claims.MIN_REGISTRATION_RELIABILITY, or too uncertain); (1.7) max_shift_px: the largest shift sought (px of the grid
                                   along either axis, the claims file's max_shift or --max-shift; null when not
                                   co-registered), notes: why the shift is unreliable or failed (a shift beyond
                                   max_shift_px names --max-shift); failed also when the shift was sought and not
                                   found (method "none", the dates compared unregistered)
    change                         change statistics of the whole grid (see imgdiff.compare)
    zones.<name>                   area_m2; per date: clear/cloud/no-data fractions; changed_fraction;
                                   counts.<object>.before|after (all detections in the zone);
                                   (1.3) undecided.<object>.before|after: weak detections whose place cannot
                                   be compared with the other date (cloud rim, hidden there), not counted
    detectors.<object>             precision, recall, min_length_m, source (figures behind the confidence);
                                   (1.2) score_calibration: the table that maps a score to the probability
                                   that the object is real (source, bins, n, n_real, precision, knots,
                                   score_at_min_evidence, probability_at_min_score), null when the detector has
                                   none; evidence_rules.calibrated_evidence says whether objects are cut on it
    evidence_rules                 (1.1) how both dates' detections become objects (imgdiff.claims.evidence_rules);
                                   (1.4) vacated_water, vacated_apron: vessels and aircraft seen in the change
                                   itself (imgdiff.vacated); vacated_dates: the dates whose objects are read from
                                   the change (1.8: for every object kind), (1.8) vacated_dates_by_object: object
                                   kind -> those dates (aircraft arrivals too), (1.8) vacated_look_veto: object
                                   kind -> whether a look of the other date vetoes such a region
    claims[]                       id, text, object, zone, assert, min_length_m, verdict, confidence,
                                   counts.before|after, objects.stayed[{before, after, distance_m}],
                                   objects.departed[before ids], objects.arrived[after ids], reasons[], caveats[];
                                   (1.3) undecided.before|after: undecided objects of the zone on the dates
                                   the claim depends on (INCONCLUSIVE when counting them would change the verdict)
    summary                        number of claims per verdict
    outputs                        file names written

Object ids are the ``id`` of the features in ``detections_before.geojson`` and
``detections_after.geojson`` (one collection per date, all object kinds, in the grid CRS; objects farther
than :data:`imgdiff.claims.pipeline.OBJECTS_MARGIN_M`, 500 m, from every zone are left out). (1.4) An object
the detector missed but the change shows (standing out on one date where the other shows open water or
plain apron) has the property ``vacated`` (peak_z, area_px, contrast, and water_ndwi and change for
vessels, other_contrast for aircraft).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..claims import (
    INCONCLUSIVE,
    REFUTED,
    SUPPORTED,
    Verdict,
    Verification,
    evidence_rules,
    zone_counts,
)
from ..claims.pipeline import SURVEY_PATH
from ..detect.base import Detections
from ..errors import check_type
from ..io.layout import one_line
from ..io.write import check_outputs, write_json, write_outputs, write_text
from ..zones import zone_masks
from .compare import _scene_entry, write_change_tif

#: Version of the ``report.json`` layout of ``imgdiff verify``.
VERIFY_SCHEMA_VERSION = "1.8"
VERIFY_OUTPUTS = ("report.json", "report.md", "report.html", "detections_before.geojson",
                  "detections_after.geojson", "change.tif")


def merged_detections(v: Verification, date: str) -> tuple[Detections, dict[tuple[str, int], int]]:
    """All object kinds of one date in one collection, and (kind, index) -> id in it."""
    idx = 0 if date == "before" else 1
    items = []
    ids: dict[tuple[str, int], int] = {}
    ref: Detections | None = None
    for kind, pair in v.detections.items():
        d = pair[idx]
        ref = ref or d
        for i, item in enumerate(d.items):
            ids[(kind, i)] = len(items)
            items.append(item)
    if ref is None:
        g = v.result.grid
        return Detections((), g.crs, g.transform, tuple(g.pixel_size_m)), ids  # type: ignore[arg-type]
    return Detections(tuple(items), ref.crs, ref.transform, ref.pixel_size_m), ids


def _verdict_entry(vd: Verdict, ids_b: dict, ids_a: dict) -> dict[str, Any]:
    k = vd.claim.object
    m = vd.match
    return {
        **vd.claim.to_dict(),
        "verdict": vd.verdict,
        "confidence": vd.confidence,
        "counts": {"before": vd.count_before, "after": vd.count_after},
        "undecided": {"before": vd.undecided_before, "after": vd.undecided_after},
        "objects": {
            "stayed": [{"before": ids_b[(k, i)], "after": ids_a[(k, j)], "distance_m": dd}
                       for (i, j), dd in zip(m.stayed, m.distance_m or [None] * len(m.stayed))],
            "departed": [ids_b[(k, i)] for i in m.departed],
            "arrived": [ids_a[(k, j)] for j in m.arrived],
        },
        "reasons": list(vd.reasons),
        "caveats": list(vd.caveats),
    }


def zone_summary(v: Verification) -> dict[str, Any]:
    """Per zone: area, visibility on each date, changed fraction and object counts."""
    g = v.result.grid
    ch = v.result.change
    masks = zone_masks(v.zones, g.crs, g.transform, (g.height, g.width))
    sx, sy = g.pixel_size_m
    out: dict[str, Any] = {}
    for n, m in masks.items():
        st_b, st_a = v.states["before"][n], v.states["after"][n]
        assessed = ch.valid & m
        counts = {kind: {"before": zone_counts(db, [n])[n], "after": zone_counts(da, [n])[n]}
                  for kind, (db, da) in v.detections.items()}
        undecided = {kind: {"before": zone_counts(ub, [n])[n], "after": zone_counts(ua, [n])[n]}
                     for kind, (ub, ua) in v.undecided.items()}
        out[n] = {
            "area_m2": round(st_b.area_px * sx * sy, 1),
            "before": st_b.to_dict(),
            "after": st_a.to_dict(),
            "changed_fraction": round(float(ch.mask[assessed].mean()), 4) if assessed.any() else None,
            "counts": counts,
            "undecided": undecided,
        }
    return out


def verify_report(v: Verification) -> dict[str, Any]:
    """The JSON-ready report of a :class:`~imgdiff.claims.Verification`."""
    check_type(v, Verification, "verify_report: v", "compute it with imgdiff.verify(imgdiff.load_claims(path))")
    from ..detect.vessels import path_radiance_record

    before, after = v.inputs
    days = (after.date - before.date).days if before.date and after.date else None
    _, ids_b = merged_detections(v, "before")
    _, ids_a = merged_detections(v, "after")
    claims = [_verdict_entry(vd, ids_b, ids_a) for vd in v.verdicts]
    summary = {k: sum(1 for c in claims if c["verdict"] == k) for k in (SUPPORTED, REFUTED, INCONCLUSIVE)}
    return {
        "schema": "imgdiff.verify",
        "schema_version": VERIFY_SCHEMA_VERSION,
        "imgdiff_version": __version__,
        "simulated_inputs": bool(_simulated(before) or _simulated(after)),
        "claims_file": None if v.claims.path == SURVEY_PATH else str(v.claims.path),
        "zones_source": v.claims.zones_source,
        "inputs": {date: {**_scene_entry(read, v.result.pair.before if date == "before" else v.result.pair.after),
                          "path_radiance": path_radiance_record(v.path_radiance.get(date))}
                   for date, read in (("before", before), ("after", after))},
        "dates": {"before": before.date.isoformat() if before.date else None,
                  "after": after.date.isoformat() if after.date else None, "days_between": days},
        "grid": v.result.grid.to_dict(),
        "coregistration": _registration_entry(v),
        "change": v.result.statistics(),
        "zones": zone_summary(v),
        "detectors": {k: p.to_dict() for k, p in v.performance.items()},
        "evidence_rules": evidence_rules(),
        "claims": claims,
        "summary": summary,
        "outputs": list(VERIFY_OUTPUTS),
    }


def _registration_entry(v: Verification) -> dict[str, Any]:
    from ..claims import registration_failed

    r = v.result.registration.to_dict()
    keep = ("dx", "dy", "dx_m", "dy_m", "uncertainty_px", "reliability", "method", "max_shift_px", "notes")
    out = {k: r.get(k) for k in keep}
    # not asked for (``compare --no-coregister``: method "none", no shift sought) is not a failure; sought and
    # not found (method "none" with the max_shift_px of the search: compared unregistered) is
    sought = r.get("method") != "none" or r.get("max_shift_px") is not None
    out["failed"] = sought and registration_failed(v.result.registration)
    return out


def _simulated(scene: Any) -> bool:
    src = str(scene.meta.get("source", ""))
    truth = Path(src) / "truth.json" if src else None
    return bool(truth and truth.is_file())


def _cell(text: object) -> str:
    """Text for one Markdown table cell: a ``|`` of the user's (claim text, zone name) would split the row."""
    return one_line(str(text)).replace("|", "\\|")


def render_verify_markdown(report: dict[str, Any]) -> str:
    """A Markdown rendering of a verify report."""
    d, r = report["dates"], report["coregistration"]
    lines = ["# imgdiff claims report" if report["claims_file"] else "# imgdiff zones report", ""]
    if report.get("simulated_inputs"):
        lines += ["> **The input scenes are simulated** (imgdiff.simulate), not real Sentinel-2 images.", ""]
    lines += [
        (f"- claims: `{report['claims_file']}`; zones: `{report['zones_source']}`" if report["claims_file"]
         else f"- no claims (objects and change per zone); zones: `{report['zones_source']}`"),
        *(f"- {date}: `{report['inputs'][date]['source']}` ({d[date] or 'date unknown'})"
          f"{_haze_note(report['inputs'][date].get('path_radiance'))}" for date in ("before", "after")),
        f"- co-registration: dx = {r['dx']:+.3f} px, dy = {r['dy']:+.3f} px, reliability "
        f"{(r['reliability'] or 0):.2f}{' (FAILED)' if r['failed'] else ''}",
    ]
    if report["claims"]:
        lines += ["", "## Verdicts", "",
                  "| claim | verdict | confidence | before | after | stayed / departed / arrived | reasons |",
                  "|---|---|---|---|---|---|---|"]
    for c in report["claims"]:
        o = c["objects"]
        why = _cell("; ".join(c["reasons"][1:] + [f"caveat: {x}" for x in c["caveats"]]))
        lines.append(f"| **{_cell(c['id'])}**: {_cell(c['text'])} | **{c['verdict']}** | {c['confidence']:.2f} | "
                     f"{c['counts']['before']} | {c['counts']['after']} | "
                     f"{len(o['stayed'])} / {len(o['departed'])} / {len(o['arrived'])} | {why} |")
    lines += ["", "## Zones", "", "| zone | clear before | clear after | changed | counts (before -> after) |",
              "|---|---|---|---|---|"]
    for n, z in report["zones"].items():
        cnt = ", ".join(f"{k} {v['before']} -> {v['after']}" for k, v in z["counts"].items())
        chg = "n/a" if z["changed_fraction"] is None else f"{z['changed_fraction']:.1%}"
        lines.append(f"| {_cell(n)} | {z['before']['clear_fraction']:.0%} | {z['after']['clear_fraction']:.0%} | "
                     f"{chg} | {cnt} |")
    lines += ["", "## Detectors", ""]
    for k, p in report["detectors"].items():
        lines.append(f"- {k}: precision {p['precision']:.2f}, recall {p['recall']:.2f}, resolves objects "
                     f">= {p['min_length_m']:g} m ({p['source']})")
        cal = p.get("score_calibration")
        if cal:
            lines.append(f"  - calibration ({cal['source']}): a score of 0.5 means probability "
                         f"{cal['probability_at_min_score']:.2f} that the object is real; probability 0.5 is "
                         f"reached at score {cal['score_at_min_evidence']:.3f}")
    rules = report.get("evidence_rules") or {}
    if rules:
        lines += ["", "## How objects are counted from the two dates", ""]
        lines += [f"- {k.replace('_', ' ')}: {rules[k]}" for k in
                  ("looks", "unchanged_place", "changed_place", "vacated_water", "vacated_apron", "hidden_place",
                   "clouds") if rules.get(k)]
    lines.append("")
    return "\n".join(lines)


def _haze_note(offsets: dict[str, float] | None) -> str:
    """The Markdown note on a date's path radiance (nothing when there is none worth a word)."""
    from ..detect.vessels import path_radiance_note

    note = path_radiance_note(offsets)
    return f"; path radiance taken off before vessel scoring (reflectance): {note}" if note else ""


def write_verify(v: Verification, outdir: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write every output of ``imgdiff verify`` into ``outdir``; return the report.

    Outputs: ``report.json``, ``report.md``, ``report.html``, ``detections_before.geojson``,
    ``detections_after.geojson``, ``change.tif`` (all moved into place together).
    """
    check_type(v, Verification, "write_verify: v", "compute it with imgdiff.verify(imgdiff.load_claims(path))")
    from ..io.geojson import detections_to_geojson
    from .html import render_verify_html

    out = check_outputs(outdir, VERIFY_OUTPUTS, overwrite)
    report = verify_report(v)
    db, _ = merged_detections(v, "before")
    da, _ = merged_detections(v, "after")
    write_outputs(out, {
        "change.tif": lambda p: write_change_tif(p, v.result),
        "detections_before.geojson": lambda p: write_json(p, detections_to_geojson(db)),
        "detections_after.geojson": lambda p: write_json(p, detections_to_geojson(da)),
        "report.md": lambda p: write_text(p, render_verify_markdown(report)),
        "report.html": lambda p: write_text(p, render_verify_html(v, report)),
        "report.json": lambda p: write_json(p, report),
    })
    return report


def change_overlay_fraction(v: Verification) -> float:
    """Fraction of assessed pixels marked changed (for summaries)."""
    ch = v.result.change
    return float(np.mean(ch.mask[ch.valid])) if ch.valid.any() else 0.0
