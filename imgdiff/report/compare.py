"""The report of one before/after comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..compare import CompareResult
from ..errors import check_type
from ..io.write import check_outputs, write_geotiff, write_json, write_outputs, write_text
from ..scene import Scene

#: Version of the ``report.json`` layout; bump on any incompatible change.
REPORT_SCHEMA_VERSION = "1.0"
COMPARE_OUTPUTS = ("change.tif", "report.json", "report.md")


def _scene_entry(s: Scene, used: Scene | None = None) -> dict[str, Any]:
    """Provenance of a scene as read; ``radiometry`` is the scaling finally used, that of ``used``
    (the scene as compared, after :func:`imgdiff.io.harmonise.harmonise_scaling`) when given."""
    return {
        "source": s.meta.get("source"),
        "date": s.date.isoformat() if s.date else None,
        "bands": list(s.bands),
        "processing_baseline": s.meta.get("processing_baseline"),
        "radiometry": (used.meta.get("radiometry") if used is not None else None) or s.meta.get("radiometry"),
        "window": s.meta.get("window"),
    }


def compare_report(result: CompareResult, inputs: tuple[Scene, Scene] | None = None) -> dict[str, Any]:
    """A JSON-ready report of a comparison.

    Parameters
    ----------
    result : CompareResult
    inputs : (Scene, Scene), optional
        The scenes as read (for provenance); default those in the result.

    Returns
    -------
    dict
        JSON-ready: inputs, dates, grid, co-registration (pixels and metres), change statistics.
    """
    check_type(result, CompareResult, "compare_report: result", "compute it with imgdiff.compare(before, after)")
    before, after = inputs or (result.pair.before, result.pair.after)
    days = (after.date - before.date).days if before.date and after.date else None
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "imgdiff_version": __version__,
        "inputs": {"before": _scene_entry(before, result.pair.before), "after": _scene_entry(after, result.pair.after)},
        "dates": {
            "before": before.date.isoformat() if before.date else None,
            "after": after.date.isoformat() if after.date else None,
            "days_between": days,
        },
        "grid": result.grid.to_dict(),
        "coregistration": result.registration.to_dict(),
        "change": result.statistics(),
    }


def render_markdown(report: dict[str, Any]) -> str:
    """A short human-readable Markdown rendering of a comparison report."""
    r, c, g = report["coregistration"], report["change"], report["grid"]
    d = report["dates"]
    lines = [
        "# imgdiff change report",
        "",
        f"- before: `{report['inputs']['before']['source']}` ({d['before'] or 'date unknown'})",
        f"- after: `{report['inputs']['after']['source']}` ({d['after'] or 'date unknown'})",
        f"- grid: {g['crs'] or 'no CRS'}, {g['width']} x {g['height']} px, "
        f"pixel {g['pixel_size_m'][0]:.1f} x {g['pixel_size_m'][1]:.1f} m",
        "",
        "## Co-registration",
        "",
        (f"Shift of the after scene: dx = {r['dx']:+.3f} px, dy = {r['dy']:+.3f} px "
         f"({r['dx_m']:+.2f} m east, {r['dy_m']:+.2f} m north), reliability {r['reliability']:.2f} "
         f"({r['method']})." if r["method"] != "none" else
         f"No shift removed: {'co-registration failed' if r.get('notes') else 'co-registration was not run'}."),
        *[f"\n**Warning:** {n}" for n in r.get("notes") or []],
        "",
        "## Change",
        "",
        "| valid pixels | changed pixels | changed fraction | changed area | method |",
        "|---|---|---|---|---|",
        f"| {c['valid_pixels']} | {c['changed_pixels']} | {c['changed_fraction']:.2%} | "
        f"{c['changed_area_m2'] / 1e6:.3f} km² | {c['method']} |",
        "",
    ]
    return "\n".join(lines)


def write_change_tif(path: Path, result: CompareResult) -> None:
    """Write ``change.tif`` on the common grid.

    Band 1 is the change magnitude (NaN where not assessed), band 2 the change mask
    (0/1) and band 3 the not-assessed mask (1 = cloud, no-data or outside the overlap).
    GeoTIFF bands share one data type, so all three are float32.
    """
    ch = result.change
    write_geotiff(
        path,
        [ch.magnitude.astype(np.float32), ch.mask.astype(np.float32), (~ch.valid).astype(np.float32)],
        result.grid,
        descriptions=["change magnitude", "change mask (1 = changed)", "not assessed (1 = masked)"],
        tags={"IMGDIFF_METHOD": ch.method, "IMGDIFF_THRESHOLD": repr(ch.threshold)},
    )


def write_compare(
    result: CompareResult,
    outdir: str | Path,
    *,
    overwrite: bool = False,
    inputs: tuple[Scene, Scene] | None = None,
) -> dict[str, Any]:
    """Write ``change.tif``, ``report.json`` and ``report.md`` into ``outdir``; return the report.

    Parameters
    ----------
    result : CompareResult
        From :func:`imgdiff.compare`.
    outdir : str or Path
        Folder to write into (created if missing).
    overwrite : bool
        Replace outputs that exist already (else :class:`~imgdiff.errors.OutputError`).
    inputs : (Scene, Scene), optional
        The scenes as read (for provenance); default those in the result.

    Returns
    -------
    dict
        The report, as :func:`compare_report` (also written as ``report.json``). ``change.tif``
        is on the before scene's grid: band 1 change magnitude, band 2 change mask (0/1), band 3
        not assessed (1 = cloud, shadow, no-data, outside the overlap), all float32.
    """
    check_type(result, CompareResult, "write_compare: result", "compute it with imgdiff.compare(before, after)")
    out = check_outputs(outdir, COMPARE_OUTPUTS, overwrite)
    report = compare_report(result, inputs)
    write_outputs(out, {
        "change.tif": lambda p: write_change_tif(p, result),
        "report.json": lambda p: write_json(p, report),
        "report.md": lambda p: write_text(p, render_markdown(report)),
    })
    return report
