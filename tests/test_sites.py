"""The site catalogue: zone layout in map coordinates, files, reprojection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from shapely.geometry import shape

from imgdiff.errors import InputError
from imgdiff.sites import (
    HMEIMIM_ARP_LONLAT,
    OSM_CREDIT,
    get_site,
    hmeimim_layout,
    load_zones,
    site_names,
)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
UTM = CRS.from_epsg(32636)


def test_catalogue_has_tartus_and_hmeimim_with_the_issue_zones():
    assert set(site_names()) >= {"tartus", "hmeimim"}
    assert get_site("tartus").zones.names == ("naval_piers", "harbour_basin", "anchorage")
    assert set(get_site("Hmeimim").zones.names) == {"apron", "shelters", "runway"}
    assert get_site("tartus").credit == OSM_CREDIT


def test_tartus_zones_lie_in_the_port_and_naval_piers_are_north_of_the_basin():
    z = get_site("tartus").zones
    for g in z.geometries.values():  # lon/lat around the port of Tartus
        x0, y0, x1, y1 = g.bounds
        assert 35.83 < x0 < x1 < 35.90 and 34.88 < y0 < y1 < 34.93
    u = z.to_crs(UTM).geometries
    assert u["naval_piers"].centroid.y > u["harbour_basin"].centroid.y + 300
    assert u["anchorage"].centroid.x < u["harbour_basin"].centroid.x - 1000  # open water to the west
    assert 0.1e6 < u["naval_piers"].area < 0.5e6
    assert 0.8e6 < u["harbour_basin"].area < 2.0e6
    assert not u["naval_piers"].intersection(u["harbour_basin"]).area > 1.0


def test_hmeimim_runway_is_2800_m_long_heading_174_deg_true_through_the_reference_point():
    rw = hmeimim_layout()["runway"]
    xs, ys = rw.exterior.coords.xy
    # the long sides: from the first corner to the second runs along the heading
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    assert math.hypot(dx, dy) == pytest.approx(2800, abs=1)
    # 174 degrees true is 172.3 from UTM 36N grid north there (the meridian convergence, 1.7 degrees)
    assert math.degrees(math.atan2(dx, dy)) % 360 == pytest.approx(172.3, abs=0.05)
    (lon0, lat0), (lon1, lat1), (lon2, lat2), (lon3, lat3) = list(
        get_site("hmeimim").zones.geometries["runway"].exterior.coords)[:4]
    p1, p2 = math.radians((lat3 + lat0) / 2), math.radians((lat1 + lat2) / 2)  # the two ends' midpoints
    dl = math.radians((lon1 + lon2) / 2 - (lon3 + lon0) / 2)
    bearing = math.degrees(math.atan2(math.sin(dl) * math.cos(p2),
                                      math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)))
    assert bearing % 360 == pytest.approx(174, abs=0.1)  # the true bearing, as the aerodrome's runway
    arp = get_site("hmeimim").zones.geometries["runway"].centroid
    assert (arp.x, arp.y) == pytest.approx(HMEIMIM_ARP_LONLAT, abs=2e-4)
    apron = get_site("hmeimim").zones.to_crs(UTM).geometries["apron"]
    assert apron.centroid.x > rw.centroid.x + 200  # beside the runway, east


def test_load_zones_takes_a_site_name_or_a_geojson_file(tmp_path):
    p = tmp_path / "z.geojson"
    p.write_text(json.dumps(get_site("tartus").to_geojson()))
    a, b = load_zones("tartus"), load_zones("z.geojson", base=tmp_path)
    assert a.names == b.names
    for n in a.names:
        assert a.geometries[n].symmetric_difference(b.geometries[n]).area < 5e-8


def test_zone_names_come_from_any_usual_property_in_any_case_or_the_feature_id():
    from imgdiff.zones import zones_from_geojson

    sq = {"type": "Polygon", "coordinates": [[[35.9, 34.9], [35.91, 34.9], [35.91, 34.91], [35.9, 34.91], [35.9, 34.9]]]}
    feats = [{"type": "Feature", "properties": {"Name": "naval_piers"}, "geometry": sq},
             {"type": "Feature", "properties": {"ZONE": "apron", "name": "ignored"}, "geometry": sq},
             {"type": "Feature", "properties": {"label": "anchorage"}, "geometry": sq},
             {"type": "Feature", "id": "runway", "properties": {"name": ""}, "geometry": sq},
             {"type": "Feature", "properties": None, "geometry": sq}]
    z = zones_from_geojson({"type": "FeatureCollection", "features": feats})
    assert z.names == ("naval_piers", "apron", "anchorage", "runway", "zone5")


def test_unknown_site_or_missing_file_is_an_input_error_naming_it():
    with pytest.raises(InputError, match="unknown site 'atlantis'"):
        get_site("atlantis")
    with pytest.raises(InputError, match="nope.geojson"):
        load_zones("nope.geojson")


@pytest.mark.parametrize("name", ["tartus", "hmeimim"])
def test_shipped_site_geojson_matches_the_catalogue(name):
    p = SAMPLES / "sites" / f"{name}.geojson"
    if not p.exists():
        pytest.skip("samples not present")
    obj = json.loads(p.read_text())
    geoms = {f["properties"]["zone"]: shape(f["geometry"]) for f in obj["features"]}
    site = get_site(name)
    assert set(geoms) == set(site.zones.names)
    for n, g in geoms.items():
        assert g.symmetric_difference(site.zones.geometries[n]).area < 5e-8


def test_site_geojson_follows_rfc7946_ring_orientation():
    from shapely.geometry import LinearRing

    for name in site_names():
        for f in get_site(name).to_geojson()["features"]:
            polys = [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"]
            for rings in polys:
                assert LinearRing(rings[0]).is_ccw
                assert all(not LinearRing(h).is_ccw for h in rings[1:])


def test_zone_numbers_that_cannot_be_lonlat_are_taken_in_the_scene_crs_not_reprojected(tmp_path):
    from imgdiff.zones import placed, read_zones

    utm = CRS.from_epsg(32636)
    ring = [[600200, 3869200], [600800, 3869200], [600800, 3869800], [600200, 3869800], [600200, 3869200]]
    p = tmp_path / "z.geojson"  # UTM metres written without the file's crs member
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "berth"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    z = placed(read_zones(p), utm)
    assert z.crs == utm and z.geometries["berth"].bounds == (600200, 3869200, 600800, 3869800)
    # real lon/lat numbers are still reprojected
    ll = tmp_path / "ll.geojson"
    ll.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "a"},
                  "geometry": {"type": "Polygon", "coordinates": [[[34, 34.9], [34.01, 34.9], [34.01, 34.91], [34, 34.9]]]}}]}))
    x, y = placed(read_zones(ll), utm).geometries["a"].exterior.coords[0]
    assert 5e5 < x < 8e5 and 3.8e6 < y < 3.9e6


def test_zones_with_heights_and_unlocated_features_are_read(tmp_path):
    from imgdiff.zones import read_zones

    ring = [[35.0, 35.0, 12.5], [35.01, 35.0, 12.5], [35.01, 35.01, 0.0], [35.0, 35.0, 12.5]]
    p = tmp_path / "z.geojson"  # [lon, lat, height] as QGIS and KML exports write them, and a feature without place
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "berth"}, "geometry": {"type": "Polygon", "coordinates": [ring]}},
        {"type": "Feature", "properties": {"name": "note"}, "geometry": None}]}))
    z = read_zones(p)
    assert z.names == ("berth",) and not z.geometries["berth"].has_z


def test_a_zone_with_empty_coordinates_is_skipped_and_the_others_keep_their_place(tmp_path):
    """An empty polygon (``"coordinates": []``, RFC 7946 3.1: a null geometry) once gave NaN bounds,
    which sent every zone of the file to the scene's local frame (all of them 100 % no data)."""
    import numpy as np
    from rasterio.transform import from_origin
    from shapely.geometry import Polygon

    from imgdiff.report.html import draw
    from imgdiff.zones import Zones, in_scene_frame, placed, read_zones

    p = tmp_path / "z.geojson"
    ring = [[35.0, 35.0], [35.01, 35.0], [35.01, 35.01], [35.0, 35.0]]
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "apron_A"}, "geometry": {"type": "Polygon", "coordinates": [ring]}},
        {"type": "Feature", "properties": {"name": "apron_C"}, "geometry": {"type": "Polygon", "coordinates": []}}]}))
    z = read_zones(p)
    assert z.names == ("apron_A",)
    x, y = placed(z, UTM).geometries["apron_A"].exterior.coords[0]
    assert 5e5 < x < 8e5 and 3.8e6 < y < 3.9e6  # UTM 36N metres, not the local frame
    built = Zones({"apron_A": z.geometries["apron_A"], "apron_C": Polygon()})  # made in code, not read
    assert in_scene_frame(built) is None  # lon/lat numbers: not a local frame
    im = draw(np.zeros((8, 8, 3), np.uint8), scale=2, zones=built.geometries, transform=from_origin(35.0, 35.01, 0.001, 0.001))
    assert im.size == (16, 16)  # the empty zone has no outline and no label (its label point raised GEOSException)


def test_a_bare_geometry_as_zones_file_is_refused_saying_what_to_write(tmp_path):
    from imgdiff.zones import read_zones

    p = tmp_path / "z.geojson"
    p.write_text(json.dumps({"type": "Polygon", "coordinates": [[[35, 35], [35.01, 35], [35.01, 35.01], [35, 35]]]}))
    with pytest.raises(InputError, match=r"z.geojson: a bare Polygon geometry has no zone name; write a FeatureCollection"):
        read_zones(p)


def test_zone_masks_from_eight_threads_at_once_are_right_and_raise_no_georeferencing_warning():
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import from_origin
    from shapely.geometry import box

    from imgdiff.zones import Zones, zone_masks

    utm = CRS.from_epsg(32636)
    tr = from_origin(700000, 3900000, 20, 20)
    zones = Zones({"apron": box(700200, 3899000, 700600, 3899600)}, utm, {})
    with warnings.catch_warnings(record=True) as caught:  # records the warnings of every thread
        warnings.simplefilter("always")
        with ThreadPoolExecutor(8) as pool:
            masks = list(pool.map(lambda _: zone_masks(zones, utm, tr, (100, 100))["apron"], range(2000)))
    assert all(int(m.sum()) == 20 * 30 for m in masks)
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]


def test_zone_masks_and_scene_reprojection_in_two_threads_at_once_raise_no_georeferencing_warning():
    # rasterize and reproject on arrays both build GDAL in-memory datasets: without one lock for
    # both, about 1 call in 3000 warned that a dataset had no geotransform (the watch test's threads)
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import from_origin
    from shapely.geometry import box

    from imgdiff import Grid, Scene, reproject_scene
    from imgdiff.zones import Zones, zone_masks

    utm = CRS.from_epsg(32636)
    tr = from_origin(700000, 3900000, 20, 20)
    zones = Zones({"apron": box(700200, 3899000, 700600, 3899600)}, utm, {})
    scene = Scene({"B04": np.random.default_rng(0).random((64, 64), dtype=np.float32)}, utm,
                  from_origin(700000, 3900000, 10, 10), np.ones((64, 64), bool))
    grid = Grid(utm, from_origin(700003, 3899997, 10, 10), 64, 64)

    def masks(n):
        return {int(zone_masks(zones, utm, tr, (100, 100))["apron"].sum()) for _ in range(n)}

    def reprojected(n):
        return {int(np.isfinite(reproject_scene(scene, grid).bands["B04"]).sum()) for _ in range(n)}

    with warnings.catch_warnings(record=True) as caught:  # records the warnings of every thread
        warnings.simplefilter("always")
        with ThreadPoolExecutor(2) as pool:  # one thread rasterizes while the other reprojects
            a, b = pool.submit(masks, 4000), pool.submit(reprojected, 1500)
            counts, finite = a.result(), b.result()
    assert counts == {20 * 30} and len(finite) == 1
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
