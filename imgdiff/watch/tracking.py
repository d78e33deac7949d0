"""Slots: berths and stands found by matching detections across dates, and their occupancy.

``track_slots`` matches each date's detections to the slots seen so far (Hungarian, within a
radius in reference pixels) and gives every slot a state per scene (occupied, vacant,
unknown); ``slot_runs`` summarises a slot's runs of occupancy; ``occupancy_rows`` is the
slot x scene table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .process import unpack_mask


@dataclass(frozen=True)
class Slot:
    """A place objects occupy across dates (a berth, a stand), found by matching detections.

    Attributes
    ----------
    id : str
    cls : str
        Object class.
    zone : str
    x, y : float
        Mean position in pixels of the reference grid (x = column, y = row).
    states : Mapping[str, str]
        Scene id -> ``"occupied"``, ``"vacant"`` or ``"unknown"`` (cloud, no data, failed scene).
    """

    id: str
    cls: str
    zone: str
    x: float
    y: float
    states: Mapping[str, str] = field(default_factory=dict)


def track_slots(results: Sequence[Mapping[str, Any]], *, radius_px: float = 3.0) -> list[Slot]:
    """Match detections across dates into slots and give each slot's state on each date.

    Dates are taken in order; each date's detections of one class are matched one-to-one
    (Hungarian, distance <= ``radius_px`` pixels of the reference grid) to the slots seen so
    far, whose positions are the running mean of their matches; unmatched detections open
    new slots. A slot is ``vacant`` on a date when nothing matched it and its pixel was
    assessed (clear sky, valid data), ``unknown`` otherwise.
    """
    from scipy.optimize import linear_sum_assignment

    ok = [r for r in results if r["status"] == "ok"]
    slots: list[dict[str, Any]] = []
    for r in ok:
        for cls in sorted({d["cls"] for d in r["detections"]}):
            dets = [d for d in r["detections"] if d["cls"] == cls]
            cand = [i for i, s in enumerate(slots) if s["cls"] == cls]
            matched: dict[int, int] = {}
            if cand and dets:
                p = np.array([d["centroid"] for d in dets])
                q = np.array([[slots[i]["sx"] / slots[i]["n"], slots[i]["sy"] / slots[i]["n"]] for i in cand])
                dist = np.hypot(p[:, None, 0] - q[None, :, 0], p[:, None, 1] - q[None, :, 1])
                cost = np.where(dist <= radius_px, dist, 1e9)
                for a, b in zip(*linear_sum_assignment(cost)):
                    if dist[a, b] <= radius_px:
                        matched[a] = cand[b]
            for k, d in enumerate(dets):
                if k in matched:
                    s = slots[matched[k]]
                else:
                    s = {"cls": cls, "zone": d["zone"], "sx": 0.0, "sy": 0.0, "n": 0, "seen": set()}
                    slots.append(s)
                s["sx"] += d["centroid"][0]
                s["sy"] += d["centroid"][1]
                s["n"] += 1
                s["seen"].add(r["id"])
    out = []
    masks = {r["id"]: unpack_mask(r["not_assessed"]) for r in ok if r.get("not_assessed")}
    for i, s in enumerate(sorted(slots, key=lambda s: (s["cls"], s["zone"], s["sy"] / s["n"], s["sx"] / s["n"]))):
        x, y = s["sx"] / s["n"], s["sy"] / s["n"]
        states = {}
        for r in results:
            if r["id"] in s["seen"]:
                states[r["id"]] = "occupied"
            elif r["status"] != "ok" or r["id"] not in masks:
                states[r["id"]] = "unknown"
            else:
                cells, f = masks[r["id"]]
                cy, cx = int(y // f), int(x // f)
                inside = 0 <= cy < cells.shape[0] and 0 <= cx < cells.shape[1]
                states[r["id"]] = "vacant" if inside and not cells[cy, cx] else "unknown"
        out.append(Slot(f"{s['cls']}-{i + 1:03d}", s["cls"], s["zone"], x, y, states))
    return out


def slot_runs(slot: Slot, order: Sequence[str]) -> dict[str, Any]:
    """Summary of one slot over the scenes in ``order``: counts, runs of occupancy, last state.

    A run is a maximal sequence of ``occupied`` dates not interrupted by a ``vacant`` one
    (``unknown`` dates neither extend nor break it).
    """
    runs, cur = [], []
    for sid in order:
        st = slot.states.get(sid, "unknown")
        if st == "occupied":
            cur.append(sid)
        elif st == "vacant" and cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    known = [(sid, slot.states[sid]) for sid in order if slot.states.get(sid, "unknown") != "unknown"]
    longest = max(runs, key=len) if runs else []
    return {
        "occupied": sum(st == "occupied" for st in slot.states.values()),
        "vacant": sum(st == "vacant" for st in slot.states.values()),
        "unknown": sum(st == "unknown" for st in slot.states.values()),
        "runs": [{"first": r[0], "last": r[-1], "dates": len(r)} for r in runs],
        "longest_run": {"first": longest[0], "last": longest[-1], "dates": len(longest)} if longest else None,
        "last_assessed": {"scene": known[-1][0], "state": known[-1][1]} if known else None,
    }


def occupancy_rows(slots: Sequence[Slot], results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tidy occupancy table: one row per slot x scene."""
    from affine import Affine

    rows = []
    grid = next((r["grid"] for r in results if r["status"] == "ok"), None)
    tr = Affine(*grid["transform"]) if grid else None
    for s in slots:
        mx, my = tr * (s.x, s.y) if tr else (None, None)
        for r in results:
            rows.append({"slot": s.id, "object_class": s.cls, "zone": s.zone, "x_px": round(s.x, 2),
                         "y_px": round(s.y, 2), "map_x": mx, "map_y": my, "date": r["date"], "scene": r["id"],
                         "state": s.states.get(r["id"], "unknown")})
    return rows


OCCUPANCY_COLUMNS = ("slot", "object_class", "zone", "x_px", "y_px", "map_x", "map_y", "date", "scene", "state")
