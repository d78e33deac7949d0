"""The files of a watch run: tidy table (CSV, Parquet), timeline PNG, per-date GeoJSON.

The tidy table has one row per scene x zone x object class (:data:`COLUMNS`); the timeline
draws counts per zone over dates and the slots' occupancy; each scene's detections are
written as GeoJSON on the reference grid.
"""

from __future__ import annotations

import csv
import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .process import OUTSIDE
from .tracking import Slot

#: Files written into the output folder.
WATCH_OUTPUTS = ("counts.csv", "counts.parquet", "occupancy.csv", "timeline.png", "summary.json")
#: Zones with more than this fraction not assessed (cloud, no data) are drawn open in the timeline.
CLOUDY_ZONE = 0.2
#: Columns of the tidy table, in order.
COLUMNS = ("date", "scene", "zone", "object_class", "count", "cloud_fraction", "confidence", "mean_score",
           "shift_dx_px", "shift_dy_px", "shift_reliability", "path_radiance", "status", "error", "source")


# --------------------------------------------------------------------------- table
def tidy_rows(results: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """The tidy table: one row per scene x zone x object class (one row per failed scene).

    ``count`` is the number of detections whose centroid lies in the zone; ``cloud_fraction``
    the fraction of the zone's pixels that could not be assessed (cloud, shadow or no data);
    ``confidence`` = (1 - cloud_fraction) x mean score of the counted objects (1 when none):
    how far the count can be trusted, 1 meaning a clear zone and certain detections;
    ``path_radiance`` the largest band's path radiance (reflectance, normally B02) the vessel detector
    took off the scene (:func:`imgdiff.detect.vessels.path_radiance`): 0 on a clear surface-reflectance
    date, about 0.05 on a top-of-atmosphere (L1C) or hazy one, whose counts rest on less certain
    scores; empty for aircraft.
    """
    rows = []
    for r in results:
        common = {"date": r["date"], "scene": r["id"], "source": r["path"], "status": r["status"],
                  "error": r.get("error")}
        if r["status"] != "ok":
            rows.append({**common, "zone": None, "object_class": None, "count": None, "cloud_fraction": None,
                         "confidence": None, "mean_score": None, "shift_dx_px": None, "shift_dy_px": None,
                         "shift_reliability": None, "path_radiance": None})
            continue
        reg = r["registration"]
        haze = r.get("path_radiance")  # absent from results cached before it was recorded
        haze = round(max(haze.values()), 4) if haze else None
        seen_classes = list(dict.fromkeys([*classes, *(d["cls"] for d in r["detections"])]))
        zones = list(r["zones"])
        if any(d["zone"] == OUTSIDE for d in r["detections"]):
            zones.append(OUTSIDE)
        for z in zones:
            cloud = r["zones"][z]["not_assessed"] if z in r["zones"] else None
            for c in seen_classes:
                ds = [d for d in r["detections"]  # nested zones: a detection counts in each holding it
                      if (d["zone"] == z or z in ((d.get("extra") or {}).get("zones") or ())) and d["cls"] == c]
                mean = float(np.mean([d["score"] for d in ds])) if ds else None
                conf = (1.0 - (cloud or 0.0)) * (mean if mean is not None else 1.0)
                rows.append({**common, "zone": z, "object_class": c, "count": len(ds),
                             "cloud_fraction": cloud, "confidence": round(conf, 4),
                             "mean_score": round(mean, 4) if mean is not None else None,
                             "shift_dx_px": reg.get("dx"), "shift_dy_px": reg.get("dy"),
                             "shift_reliability": reg.get("reliability"), "path_radiance": haze})
    return [{k: row.get(k) for k in COLUMNS} for row in rows]


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write rows as CSV (empty cells for None)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})


def write_parquet(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the tidy table as Parquet with a fixed schema (date as a date32 column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("date", pa.date32()), ("scene", pa.string()), ("zone", pa.string()), ("object_class", pa.string()),
        ("count", pa.int64()), ("cloud_fraction", pa.float64()), ("confidence", pa.float64()),
        ("mean_score", pa.float64()), ("shift_dx_px", pa.float64()), ("shift_dy_px", pa.float64()),
        ("shift_reliability", pa.float64()), ("path_radiance", pa.float64()), ("status", pa.string()), ("error", pa.string()),
        ("source", pa.string()),
    ])
    data = [{**r, "date": _dt.date.fromisoformat(r["date"])} for r in rows]
    pq.write_table(pa.Table.from_pylist(data, schema=schema), path)


# --------------------------------------------------------------------------- plots and GeoJSON
def plot_timeline(path: str | Path, rows: Sequence[Mapping[str, Any]], slots: Sequence[Slot],
                  results: Sequence[Mapping[str, Any]], title: str = "") -> None:
    """Occupancy timeline PNG: counts per zone and class over dates (top), slot x date states (bottom)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    dates = [_dt.date.fromisoformat(r["date"]) for r in results]
    n_slots = len(slots)
    fig = Figure(figsize=(10, 4 + min(8, 0.18 * n_slots)), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, sharex=False, gridspec_kw={"height_ratios": [1, max(1, min(3, n_slots / 12))]})
    series: dict[tuple[str, str], list[tuple[_dt.date, int, float]]] = {}
    for r in rows:
        if r["status"] == "ok":
            series.setdefault((r["zone"], r["object_class"]), []).append(
                (_dt.date.fromisoformat(r["date"]), r["count"], r["cloud_fraction"] or 0.0))
    for (z, c), pts in sorted(series.items()):
        pts.sort()
        (line,) = ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"{z}: {c}")
        hidden = [p for p in pts if p[2] > CLOUDY_ZONE]
        if hidden:  # counts of zones mostly hidden by cloud: open markers
            ax1.plot([p[0] for p in hidden], [p[1] for p in hidden], ls="none", marker="o", ms=7, mfc="white",
                     mec=line.get_color())
    for r in results:
        if r["status"] != "ok":
            ax1.axvline(_dt.date.fromisoformat(r["date"]), color="red", lw=0.8, ls=":")
    ax1.set_ylabel("objects counted")
    ax1.set_title((title or "counts per zone") + f" (open: zone > {CLOUDY_ZONE:.0%} cloud; red dotted: scene failed)",
                  fontsize=10)
    if series:
        ax1.legend(fontsize=7, loc="upper left", ncol=2)
    code = {"unknown": 0, "vacant": 1, "occupied": 2}
    if n_slots:
        m = np.array([[code[s.states.get(r["id"], "unknown")] for r in results] for s in slots])
        ax2.imshow(m, aspect="auto", interpolation="nearest", vmin=0, vmax=2,
                   cmap=ListedColormap(["#d0d0d0", "#ffffff", "#1f4e9c"]))
        if n_slots <= 60:
            ax2.set_yticks(range(n_slots))
            ax2.set_yticklabels([f"{s.id} ({s.zone})" for s in slots], fontsize=6)
        else:
            ax2.set_ylabel(f"{n_slots} slots")
        step = max(1, len(dates) // 12)
        ax2.set_xticks(range(0, len(dates), step))
        ax2.set_xticklabels([dates[i].isoformat() for i in range(0, len(dates), step)], rotation=45, fontsize=7,
                            ha="right")
        ax2.set_title("slot occupancy (blue occupied, white vacant, grey unknown)", fontsize=9)
    else:
        ax2.text(0.5, 0.5, "no objects detected on any date", ha="center", va="center")
        ax2.set_axis_off()
    fig.tight_layout(h_pad=1.5)  # room for the slot labels, however long the zone names are
    fig.savefig(path, format="png")


def result_detections(result: Mapping[str, Any]) -> Any:
    """A scene result's detections as :class:`~imgdiff.detect.base.Detections` on the reference grid."""
    from affine import Affine
    from rasterio.crs import CRS

    from ..detect.base import Detection, Detections

    g = result["grid"]
    crs = CRS.from_user_input(g["crs"]) if g["crs"] else None
    nan = float("nan")
    items = tuple(
        Detection(box=tuple(d["box"]), score=d["score"], cls=d["cls"], zone=d["zone"],
                  length_m=nan if d["length_m"] is None else d["length_m"],
                  width_m=nan if d["width_m"] is None else d["width_m"],
                  heading_deg=nan if d["heading_deg"] is None else d["heading_deg"],
                  centroid=tuple(d["centroid"]), extra={**d.get("extra", {}), "date": result["date"]})
        for d in result["detections"]
    )
    return Detections(items, crs, Affine(*g["transform"]))


def detections_geojson(result: Mapping[str, Any]) -> dict[str, Any]:
    """One scene's detections as GeoJSON, in the layout of ``imgdiff detect``
    (:func:`imgdiff.io.geojson.detections_to_geojson`): boxes as polygons in the reference
    scene's CRS, named in a ``crs`` member, positions already co-registered to the reference."""
    from ..io.geojson import detections_to_geojson

    return detections_to_geojson(result_detections(result))
