"""Aircraft read from the change on a real two-date airport without labels. Run by hand (not a test); prints figures.

    python benchmarks/vacated_airport.py

:func:`imgdiff.vacated.apron_changes` counts an aircraft that left (or arrived) where a compact region stands out
on one date and the other date shows plain apron there. OSCD Beirut (real Sentinel-2 L1C, 2015-08-20 and
2017-10-03) holds Rafic Hariri airport: the pair is verified (:func:`imgdiff.claims.verify`, ``unchanged``
aircraft claims) over zones laid out as pixel windows of the before date's grid and written as lon/lat
GeoJSON, in both date orders, and every object read from the change is listed (zone, box in pixels, peak,
contrast on its date and on the other). Two zone sets, each verified on its own: ``terminal_apron`` (75 x 40 px
around the terminal's stands), and the airport crop in three bands north to south (168 px wide; taxiways, fields,
and in the north the town's edge beyond the fence). Nothing here is labelled: an object read from the change is checked by eye (the boxes are
printed for that), and the counts per zone set beside the code's earlier figures in ``benchmarks/HISTORY.md``.

Measured 2026-11-28 (seventh session), against the code before aircraft arrivals were read from the change
(``dfbb8ba``). Terminal apron 5 -> 5 aircraft, as before (swapped dates 3 -> 5, as before: the date on the common
grid scores differently from the warped one). The three bands 6 -> 7 (was 6 -> 6), 1 -> 0, 1 -> 0: the 7th an
arrival at a road and building edge north of the fence (box [221, 905, 224, 908], peak 10.8 spreads against
``APRON_PEAK_Z`` 10, contrast 0.126 against 0.051), not an aircraft; swapped 4 -> 3, 1 -> 3, 1 -> 1 as before.
Regions read from the change over the whole pair: forward none before, now three (the north arrival, and a
departure and an arrival outside every zone); swapped one departure before (outside the zones), now three, all
outside the zones. Two of the forward three and one of the swapped three come from aircraft regions no longer
being vetoed by a weaker look of the other date (``imgdiff.claims.evidence.VACATED_LOOK_VETO``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import imgdiff
from imgdiff.claims import load_claims, verify
from imgdiff.data import data_dir

#: Zone sets (each verified on its own: an object counts in one zone only), as pixel windows (col0, row0, col1,
#: row1) of the before date's grid of OSCD Beirut.
ZONE_SETS: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "apron": {"terminal_apron": (285, 928, 360, 968)},
    "airport": {"north": (200, 882, 368, 960), "middle": (200, 960, 368, 1020), "south": (200, 1020, 368, 1080)},
}


def zones_geojson(before: Path, zones_px: dict[str, tuple[int, int, int, int]]) -> dict:
    """Pixel-window zones as a lon/lat FeatureCollection (the OSCD bands are in EPSG:4326)."""
    t = imgdiff.read_scene(before, bands=["B02"]).transform
    feats = []
    for name, (c0, r0, c1, r1) in zones_px.items():
        ring = [list(t * (c, r)) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))]
        feats.append({"type": "Feature", "properties": {"name": name},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "features": feats}


def run(first: Path, second: Path, zones_px: dict[str, tuple[int, int, int, int]], label: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "zones.geojson").write_text(json.dumps(zones_geojson(first, zones_px)))
        claims = "".join(f"  - {{id: {z}, object: aircraft, zone: {z}, assert: unchanged}}\n" for z in zones_px)
        (Path(tmp) / "claims.yaml").write_text(f"before: {first}\nafter: {second}\nzones: zones.geojson\nclaims:\n{claims}")
        vf = verify(load_claims(Path(tmp) / "claims.yaml"))
    print(f"{label}:")
    for v in vf.verdicts:
        print(f"  {v.claim.zone:15s} {v.count_before} -> {v.count_after}")
    before, after = vf.detections["aircraft"]
    for date, dets in (("before (departure)", before), ("after (arrival)", after)):
        for d in dets:
            vac = d.extra.get("vacated")
            if vac:
                print(f"  read from the change, {date}: zone {d.zone}, box {[round(x) for x in d.box]} px, "
                      f"peak {vac['peak_z']}, contrast {vac['contrast']} against {vac['other_contrast']}")


def main() -> None:
    root = data_dir() / "oscd" / "beirut"
    for name, zones_px in ZONE_SETS.items():
        run(root / "before", root / "after", zones_px, f"{name}, Beirut 2015-08-20 -> 2017-10-03")
        run(root / "after", root / "before", zones_px, f"{name}, swapped, 2017-10-03 -> 2015-08-20")


if __name__ == "__main__":
    main()
