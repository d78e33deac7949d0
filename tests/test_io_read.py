"""Scene ingest: every layout, radiometry, dates and windowed reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from numpy.testing import assert_allclose
from rasterio.transform import from_origin

from imgdiff import read_scene
from imgdiff.errors import BandError, EmptySceneError, InputError, NoOverlapError, ReflectanceError
from imgdiff.io.read import choose_radiometry, find_band_sources

from .conftest import need, write_band

TR10 = from_origin(600000, 3870000, 10, 10)
TR20 = from_origin(600000, 3870000, 20, 20)


def dn(value: int, shape=(40, 50)) -> np.ndarray:
    rng = np.random.default_rng(value)
    return (value + rng.integers(0, 50, shape)).astype("uint16")


@pytest.fixture
def band_folder(tmp_path):
    for b, v in (("B02", 1000), ("B03", 1200), ("B04", 1400), ("B08", 3000)):
        write_band(tmp_path / f"{b}.tif", dn(v), transform=TR10)
    return tmp_path


def test_band_folder_reads_every_band_as_float32_reflectance(band_folder):
    s = read_scene(band_folder)
    assert s.band_names == ("B02", "B03", "B04", "B08")
    assert s.bands["B02"].dtype == np.float32
    with rasterio.open(band_folder / "B04.tif") as ds:
        raw = ds.read(1)
    assert_allclose(s.bands["B04"], raw / 10000.0, rtol=1e-6)
    assert s.crs.to_epsg() == 32636 and s.transform == TR10 and s.valid.all()


def test_a_stated_scale_that_leaves_digital_numbers_is_refused_naming_the_file_and_the_scale(band_folder):
    """scale=1.0 on files of reflectance x 10000 would give a scene of numbers (all cloud): refused in one line."""
    with pytest.raises(ReflectanceError) as e:
        read_scene(band_folder, scale=1.0)
    msg = str(e.value)
    assert msg.startswith(f"{band_folder}: scale 1.0 leaves B02's median at 10") and "\n" not in msg
    assert "digital numbers" in msg and "scale=1e-4" in msg and "leave scale out" in msg
    # B02-B04 come out below 2 (about 0.9-1.3), B08's numbers (3000-3049) at 2.9-3.0
    with pytest.raises(ReflectanceError, match=r": scale 0\.001, offset -0\.1 leaves B08's median at 2\.9"):
        read_scene(band_folder, scale=1e-3, offset=-0.1)
    # a stated scale that gives reflectance is taken as given
    s = read_scene(band_folder, scale=1e-4)
    assert s.meta["radiometry"]["B02"]["source"] == "given by caller"
    assert_allclose(np.nanmedian(s.bands["B02"]), 0.1025, atol=1e-3)


def test_prefixed_and_copernicus_browser_names_are_recognised(tmp_path):
    write_band(tmp_path / "T36SYC_20171003T081739_B02.tif", dn(1000))
    write_band(tmp_path / "2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_B08_(Raw).tiff", dn(3000))
    sources = find_band_sources(tmp_path)
    assert [s.name for s in sources] == ["B02", "B08"]


def test_common_band_names_in_file_names_and_descriptions_are_recognised(tmp_path):
    for name in ("blue", "green", "red", "scene_nir"):
        write_band(tmp_path / f"{name}.tif", dn(1000))
    assert [s.name for s in find_band_sources(tmp_path)] == ["B02", "B03", "B04", "B08"]
    f = tmp_path / "stack" / "s.tif"
    f.parent.mkdir()
    write_band(f, np.stack([dn(v) for v in (1000, 1200, 1400, 3000)]), descriptions=["blue", "green", "red", "nir"])
    assert read_scene(f).band_names == ("B02", "B03", "B04", "B08")


def test_copernicus_browser_raw_export_is_scaled_by_65535(tmp_path):
    write_band(tmp_path / "2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_B08_(Raw).tiff", np.full((8, 8), 6553, "uint16"))
    s = read_scene(tmp_path)
    assert s.date == dt.date(2023, 8, 18)
    assert_allclose(s.bands["B08"], 0.1, atol=1e-4)


def test_renamed_raw_export_is_read_as_65535_from_its_levels_and_l1c_levels_are_not(tmp_path):
    """A raw export renamed B02.tif ... (no name or metadata says its scaling): DN far above what
    reflectance x 10000 can reach (99th percentile > 20,000) are read as x 65535, without the
    baseline-04 offset; ordinary L1C levels, bright cloud included, keep the x 10000 convention."""
    rng = np.random.default_rng(0)
    refl = rng.uniform(0.02, 0.45, (4, 40, 50))  # water to bright concrete
    for name, scale in (("renamed", 65535), ("l1c", 10000)):
        d = tmp_path / name
        d.mkdir()
        for i, b in enumerate(("B02", "B03", "B04", "B08")):
            a = refl[i].copy()
            if name == "l1c":
                a[:10, :10] = 1.4  # a cloud brighter than any surface
                a[30:, :20] = 6.5535  # and one drawn saturated white (DN 65535), 20 % of the scene
            write_band(d / f"T36SYC_20230818T081739_{b}.tif", np.round(a * scale).astype("uint16"))
    s = read_scene(tmp_path / "renamed")
    assert_allclose(s.bands["B08"], refl[3], atol=1e-4)
    assert s.meta["radiometry"]["B02"]["source"].startswith("inferred from levels")
    s = read_scene(tmp_path / "l1c")
    assert_allclose(s.bands["B08"][10:30], refl[3][10:30], atol=1e-4)  # DN/10000 (dark: no baseline offset)
    assert s.meta["radiometry"]["B02"]["source"].startswith("DN/10000")


def test_float_digital_numbers_are_scaled_like_the_integers_they_stand_for(tmp_path):
    """A raw export whose numbers were stored as float32 (converted to apply a gain): values far above
    any reflectance are digital numbers, scaled by the export's name; float reflectance stays as it is."""
    refl = np.random.default_rng(1).uniform(0.02, 0.45, (40, 50))
    for name, data in (("dn", np.round(refl * 65535)), ("refl", refl)):
        (tmp_path / name).mkdir()
        write_band(tmp_path / name / "2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_B08_(Raw).tiff",
                   data.astype("float32"))
    s = read_scene(tmp_path / "dn")
    assert_allclose(s.bands["B08"], refl, atol=1e-4)
    assert "float digital numbers" in s.meta["radiometry"]["B08"]["source"]
    assert_allclose(read_scene(tmp_path / "refl").bands["B08"], refl, atol=1e-6)


def test_pair_of_a_raw_export_and_its_renamed_dark_copy_gets_one_scaling(tmp_path):
    """The after date written as B08.tif with the export's DN, too dark for the levels to tell:
    the pair takes the before date's x 65535 (compare, verify and survey read pairs through it)."""
    from imgdiff.io.read import harmonise_scaling

    water = np.full((8, 8), 1300, "uint16")  # reflectance 0.02 x 65535
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    write_band(tmp_path / "b" / "2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_B08_(Raw).tiff", water)
    write_band(tmp_path / "a" / "B08.tif", water)
    before, after = read_scene(tmp_path / "b"), read_scene(tmp_path / "a")
    assert_allclose(after.bands["B08"], 0.13, atol=1e-4)  # alone: the x 10000 convention
    hb, ha = harmonise_scaling(before, after)
    assert hb is before
    assert_allclose(ha.bands["B08"], before.bands["B08"], atol=1e-6)
    assert ha.meta["radiometry"]["B08"]["scale"] == pytest.approx(1 / 65535)
    same_b, same_a = harmonise_scaling(after, after)  # nothing says x 65535: left alone
    assert same_a is after and same_b is after
    (tmp_path / "c").mkdir()  # an after date truly converted to reflectance x 10000: as bright as the export
    write_band(tmp_path / "c" / "B08.tif", np.full((8, 8), 200, "uint16"))
    converted = read_scene(tmp_path / "c")
    assert harmonise_scaling(before, converted)[1] is converted


def test_a_top_of_atmosphere_date_brighter_in_blue_only_is_not_taken_for_a_renamed_raw_export(tmp_path):
    """L1C after a surface-reflectance export, over water: blue is 4 times brighter, the rest ~1.5 times.
    A renamed copy would be 6.55 times brighter in every band; this one keeps its x 10000 reading."""
    from imgdiff.io.read import harmonise_scaling

    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    levels = {"B02": (0.02, 0.08), "B03": (0.03, 0.05), "B04": (0.02, 0.03), "B08": (0.01, 0.015)}
    for b, (boa, toa) in levels.items():
        write_band(tmp_path / "b" / f"2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_{b}_(Raw).tiff",
                   np.full((8, 8), round(boa * 65535), "uint16"))
        write_band(tmp_path / "a" / f"T36SYC_20230828T083259_{b}.tif", np.full((8, 8), round(toa * 10000), "uint16"))
    before, after = read_scene(tmp_path / "b"), read_scene(tmp_path / "a")
    hb, ha = harmonise_scaling(before, after)
    assert hb is before and ha is after
    assert_allclose(ha.bands["B02"], 0.08, atol=1e-4)


def test_processing_baseline_offset_applies_from_2022_01_25(tmp_path):
    for name, date in (("old", "20220124"), ("new", "20220125")):
        d = tmp_path / name
        d.mkdir()
        write_band(d / f"T36SYC_{date}T081739_B04.tif", np.full((8, 8), 2000, "uint16"))
    assert_allclose(read_scene(tmp_path / "old").bands["B04"], 0.2, atol=1e-6)
    assert_allclose(read_scene(tmp_path / "new").bands["B04"], 0.1, atol=1e-6)


def test_numbers_below_the_offset_are_read_without_the_offset_the_date_suggests(tmp_path):
    """Acquired after 2022-01-25 but written without the +1000 DN offset (a converted product): blue
    water at DN 300-600 would be negative reflectance with it, so the offset is dropped for every band."""
    rng = np.random.default_rng(2)
    for name, add in (("plain", 0), ("offset", 1000)):
        d = tmp_path / name
        d.mkdir()
        for b, lo in (("B02", 300), ("B08", 100)):
            write_band(d / f"T36SYC_20230818T081739_{b}.tif", (rng.integers(lo, lo + 300, (20, 20)) + add).astype("uint16"))
    plain, offset = read_scene(tmp_path / "plain"), read_scene(tmp_path / "offset")
    assert plain.meta["radiometry"]["B08"]["offset"] == 0.0 and "without offset" in plain.meta["radiometry"]["B08"]["source"]
    assert offset.meta["radiometry"]["B08"]["offset"] == pytest.approx(-0.1)
    with rasterio.open(tmp_path / "plain" / "T36SYC_20230818T081739_B02.tif") as ds:
        assert_allclose(plain.bands["B02"], ds.read(1) / 10000, atol=1e-6)
    assert_allclose(offset.bands["B02"][offset.bands["B02"] > 0].min(), 0.03, atol=0.001)


def test_baseline_from_metadata_wins_over_date():
    r = choose_radiometry("uint16", date=dt.date(2023, 1, 1), baseline="03.01")
    assert r.offset == 0.0
    r = choose_radiometry("uint16", date=dt.date(2019, 1, 1), baseline="04.00")
    assert r.offset == pytest.approx(-0.1)


def test_safe_granule_with_resolution_folders_and_metadata(tmp_path):
    safe = tmp_path / "S2B_MSIL2A_20241213T082259_N0511_R121_T36SYD_20241213T101010.SAFE"
    img = safe / "GRANULE" / "L2A_T36SYD_A040000_20241213T082259" / "IMG_DATA"
    (img / "R10m").mkdir(parents=True)
    (img / "R20m").mkdir()
    prof = {"driver": "JP2OpenJPEG", "QUALITY": 100, "REVERSIBLE": "YES"}
    for b in ("B02", "B04", "B08"):
        _jp2(img / "R10m" / f"T36SYD_20241213T082259_{b}_10m.jp2", np.full((20, 20), 3000, "uint16"), TR10, prof)
    _jp2(img / "R20m" / "T36SYD_20241213T082259_B02_20m.jp2", np.full((10, 10), 9999, "uint16"), TR20, prof)
    _jp2(img / "R20m" / "T36SYD_20241213T082259_B11_20m.jp2", np.full((10, 10), 2000, "uint16"), TR20, prof)
    _jp2(img / "R20m" / "T36SYD_20241213T082259_SCL_20m.jp2", np.full((10, 10), 4, "uint16"), TR20, prof)
    (safe / "MTD_MSIL2A.xml").write_text(
        """<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="x"><n1:General_Info><Product_Info>
        <PRODUCT_START_TIME>2024-12-13T08:22:59.024Z</PRODUCT_START_TIME><PROCESSING_BASELINE>05.11</PROCESSING_BASELINE>
        </Product_Info><Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>
        <BOA_ADD_OFFSET_VALUES_LIST><BOA_ADD_OFFSET band_id="1">-1000</BOA_ADD_OFFSET>
        <BOA_ADD_OFFSET band_id="3">-1000</BOA_ADD_OFFSET><BOA_ADD_OFFSET band_id="7">-1000</BOA_ADD_OFFSET>
        <BOA_ADD_OFFSET band_id="11">-1000</BOA_ADD_OFFSET></BOA_ADD_OFFSET_VALUES_LIST>
        </Product_Image_Characteristics></n1:General_Info></n1:Level-2A_User_Product>"""
    )
    s = read_scene(safe)
    assert s.band_names == ("B02", "B04", "B08", "B11")  # SCL is not a band; B02 from R10m
    assert s.date == dt.date(2024, 12, 13)
    assert s.meta["processing_baseline"] == "05.11"
    assert s.shape == (20, 20)
    assert_allclose(s.bands["B02"], 0.2, atol=1e-6)  # (3000 - 1000) / 10000, not the 20 m copy
    assert_allclose(s.bands["B11"][2:-2, 2:-2], 0.1, atol=1e-6)  # 20 m band resampled to 10 m


def _jp2(path, arr, transform, prof):
    with rasterio.open(path, "w", width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype,
                       crs="EPSG:32636", transform=transform, **prof) as ds:
        ds.write(arr, 1)


def test_multiband_geotiff_with_band_descriptions(tmp_path):
    arr = np.stack([dn(1000), dn(3000)])
    f = write_band(tmp_path / "stack.tif", arr, descriptions=["B04", "B8"])
    s = read_scene(f)
    assert s.band_names == ("B04", "B08")
    assert_allclose(s.bands["B08"], arr[1] / 10000, rtol=1e-6)


def test_multiband_geotiff_with_explicit_band_list(tmp_path):
    arr = np.stack([dn(1000), dn(1200), dn(1400)])
    f = write_band(tmp_path / "rgb.tif", arr)
    s = read_scene(f, bands=["B04", "B03", "B02"])
    assert_allclose(s.bands["B04"], arr[0] / 10000, rtol=1e-6)
    with pytest.raises(InputError, match="unknown band layout"):
        read_scene(f)
    with pytest.raises(BandError, match="3 band"):
        read_scene(f, bands=["B04", "B03"])


def test_20m_band_is_resampled_bilinearly_onto_the_10m_grid(tmp_path):
    ramp20 = (1000 + 100 * np.arange(20)[None, :].repeat(20, 0)).astype("uint16")
    write_band(tmp_path / "B08.tif", dn(3000, (40, 40)), transform=TR10)
    write_band(tmp_path / "B11.tif", ramp20, transform=TR20)
    s = read_scene(tmp_path)
    assert s.shape == (40, 40) and s.transform == TR10
    # 10 m pixel centre at column c lies at 20 m column (c + 0.5) / 2 - 0.5: linear ramp of 0.01 per 20 m pixel
    c = np.arange(4, 36)
    expected = (1000 + 100 * ((c + 0.5) / 2 - 0.5)) / 10000
    assert_allclose(s.bands["B11"][20, 4:36], expected, atol=1e-5)


def test_nodata_and_zero_fill_become_nan_and_invalid(tmp_path):
    a = dn(1000)
    a[:5] = 0
    b = dn(3000)
    b[:5] = 0  # zero in every band: fill outside the swath
    b[:, :3] = 65535
    write_band(tmp_path / "B02.tif", a)
    write_band(tmp_path / "B08.tif", b, nodata=65535)
    s = read_scene(tmp_path)
    assert not s.valid[:5].any() and not s.valid[:, :3].any()
    assert np.isnan(s.bands["B08"][:5]).all() and np.isnan(s.bands["B02"][:, :3]).all()
    assert s.valid[5:, 3:].all()


def test_zero_in_one_band_only_is_a_dark_valid_pixel(tmp_path):
    # NIR over calm water reads DN 0 in real exports (sen2ships honolulu: 24 % of B08) while
    # the visible bands hold signal: the pixel is valid, with reflectance 0 in that band.
    a = dn(1000)
    b = dn(3000)
    b[2:6, 2:6] = 0
    write_band(tmp_path / "B02.tif", a)
    write_band(tmp_path / "B08.tif", b, nodata=0)
    s = read_scene(tmp_path)
    assert s.valid.all()
    assert (s.bands["B08"][2:6, 2:6] == 0).all() and np.isfinite(s.bands["B02"]).all()


def test_all_nodata_scene_is_an_error(tmp_path):
    write_band(tmp_path / "B02.tif", np.zeros((8, 8), "uint16"))
    with pytest.raises(EmptySceneError, match="no valid pixel"):
        read_scene(tmp_path)


def test_date_from_caller_tags_and_names(tmp_path):
    write_band(tmp_path / "B02.tif", dn(1000), tags={"ACQUISITION_DATE": "2015-08-20"})
    assert read_scene(tmp_path).date == dt.date(2015, 8, 20)
    assert read_scene(tmp_path, date="2020-01-02").date == dt.date(2020, 1, 2)


def test_bbox_reads_only_its_window(tmp_path, monkeypatch):
    write_band(tmp_path / "B08.tif", dn(3000, (400, 400)), transform=TR10)
    windows = []
    real_read = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        windows.append(kwargs.get("window"))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    # 600100..600300 E, 3866000..3866500 N in UTM 36N -> columns 10..30, rows 350..400
    s = read_scene(tmp_path, bbox=(600100, 3866000, 600300, 3866500), bbox_crs="EPSG:32636")
    assert s.shape == (50, 20)
    assert windows and all(w is not None and w.width * w.height <= 50 * 20 for w in windows)
    assert s.transform.c == 600100 and s.transform.f == 3866500


def test_bbox_in_lonlat_is_reprojected(tmp_path):
    write_band(tmp_path / "B08.tif", dn(3000, (400, 400)), transform=TR10)
    # a lon/lat box around UTM 36N (601000, 3868000)
    from rasterio.warp import transform as tf

    lon, lat = tf("EPSG:32636", "EPSG:4326", [600950, 601050], [3867950, 3868050])
    s = read_scene(tmp_path, bbox=(lon[0], lat[0], lon[1], lat[1]))
    assert 8 <= s.shape[0] <= 13 and 8 <= s.shape[1] <= 13


def test_bbox_outside_the_scene_is_a_clear_error(tmp_path):
    write_band(tmp_path / "B08.tif", dn(3000))
    with pytest.raises(NoOverlapError, match="does not intersect"):
        read_scene(tmp_path, bbox=(10.0, 10.0, 10.1, 10.1))


def test_missing_band_is_named(band_folder):
    with pytest.raises(BandError, match="B11"):
        read_scene(band_folder, bands=["B04", "B11"])


def test_oscd_geographic_scene_with_mixed_resolutions(shared_data):
    d = need(shared_data / "oscd" / "beirut" / "before")
    # Beirut port, a small window
    s = read_scene(d, bands=["B02", "B04", "B08", "B11"], bbox=(35.50, 33.89, 35.53, 33.91))
    assert s.crs.to_epsg() == 4326
    assert s.date == dt.date(2015, 8, 20)
    assert 150 < s.shape[0] < 260 and 250 < s.shape[1] < 340
    assert s.valid.mean() > 0.99
    px, py = s.pixel_size_m
    assert 8.5 < px < 10 and 10.5 < py < 11.5
    assert 0.0 < np.nanmedian(s.bands["B04"]) < 0.5 and np.isfinite(s.bands["B11"]).all()


def test_sen2ships_copernicus_browser_port(shared_data):
    d = need(shared_data / "sen2ships" / "honolulu")
    s = read_scene(d)
    assert s.band_names == ("B02", "B03", "B04", "B08", "B11")
    assert s.crs.to_epsg() == 3857 and s.date == dt.date(2023, 1, 8)
    assert np.nanmax(s.bands["B08"]) <= 1.0 + 1e-6


def _write_plain(path, data):
    """A GeoTIFF with no CRS, geotransform or GCPs (as numpy-to-file scripts write them)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                           dtype=data.dtype) as ds:
            ds.write(data, 1)
    return path


def test_bands_without_georeferencing_get_a_local_frame_of_their_native_pixel_size(tmp_path):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    for b in ("B02", "B03", "B04"):
        _write_plain(tmp_path / f"{b}.tif", np.full((40, 30), 800, np.uint16))
    _write_plain(tmp_path / "B11.tif", np.full((20, 15), 1500, np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)  # rasterio's warning is not passed on
        s = read_scene(tmp_path)
    assert s.crs is None
    assert tuple(s.transform)[:6] == (10.0, 0.0, 0.0, 0.0, -10.0, 400.0)
    assert s.shape == (40, 30) and s.pixel_size_m == (10.0, 10.0)
    assert_allclose(s.bands["B11"][s.valid], 0.15, atol=1e-6)  # the 20 m band covers the same extent
    assert s.valid.all()
    assert "local frame" in s.meta["georeferencing"] and "B11" in s.meta["georeferencing"]


def test_after_date_written_without_georeferencing_shares_the_frame_of_a_local_frame_before(tmp_path):
    from imgdiff import compare

    rng = np.random.default_rng(0)
    img = (800 + rng.normal(0, 60, (64, 64))).astype(np.uint16)
    for b in ("B02", "B03", "B04"):
        (tmp_path / "before").mkdir(exist_ok=True)
        (tmp_path / "after").mkdir(exist_ok=True)
        # before as the aircraft_s2sim chips are: no CRS, 10 m pixels, lower-left corner at (0, 0)
        write_band(tmp_path / "before" / f"{b}.tif", img, crs=None, transform=from_origin(0, 640, 10, 10))
        _write_plain(tmp_path / "after" / f"{b}.tif", img)
    before, after = read_scene(tmp_path / "before"), read_scene(tmp_path / "after")
    assert after.transform == before.transform and "georeferencing" not in before.meta
    r = compare(before, after)
    assert r.pair.grid.shape == (64, 64)
    assert abs(r.registration.dx) < 0.05 and abs(r.registration.dy) < 0.05


def test_an_undated_copy_takes_the_baseline_offset_of_its_dated_partner_when_its_numbers_allow(tmp_path):
    from imgdiff.io.read import harmonise_scaling

    rng = np.random.default_rng(1)
    dn = (1000 + rng.uniform(300, 2500, (30, 30))).astype(np.uint16)  # reflectance x 10000 + 1000
    for folder, prefix, data in (("dated", "2024-03-01_", dn), ("copy", "", dn), ("plain", "", dn - 1000)):
        (tmp_path / folder).mkdir()
        for b in ("B02", "B03", "B04"):
            write_band(tmp_path / folder / f"{prefix}{b}.tif", data)
    dated, copy, plain = (read_scene(tmp_path / f) for f in ("dated", "copy", "plain"))
    assert_allclose(copy.bands["B02"] - dated.bands["B02"], 0.1, atol=1e-6)  # each read alone
    b, a = harmonise_scaling(dated, copy)
    assert_allclose(a.bands["B02"], b.bands["B02"], atol=1e-6)
    assert a.meta["radiometry"]["B04"]["offset"] == -0.1 and "other date" in a.meta["radiometry"]["B04"]["source"]
    # numbers below DN 1000 cannot carry the offset: that copy stays as it is
    _, p = harmonise_scaling(dated, plain)
    assert_allclose(p.bands["B02"], plain.bands["B02"])
    # an undated chip truly without the offset, as bright as its dated partner: it would be 0.1 too dark with it
    bright = (rng.uniform(1200, 2500, (30, 30))).astype(np.uint16)  # reflectance 0.12-0.25, every DN above 1000
    for folder, prefix, data in (("dated2", "2024-03-01_", bright + 1000), ("chip", "", bright)):
        (tmp_path / folder).mkdir()
        for b in ("B02", "B03", "B04"):
            write_band(tmp_path / folder / f"{prefix}{b}.tif", data)
    chip = read_scene(tmp_path / "chip")
    assert harmonise_scaling(read_scene(tmp_path / "dated2"), chip)[1] is chip


def test_the_report_records_the_scaling_the_pair_was_compared_with(tmp_path):
    from imgdiff import compare, compare_report

    rng = np.random.default_rng(2)
    dn = (1300 + rng.normal(0, 150, (64, 64))).clip(1, None).astype("uint16")  # reflectance ~0.02 x 65535
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    for b in ("B02", "B03", "B04", "B08"):
        write_band(tmp_path / "b" / f"2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_{b}_(Raw).tiff", dn)
        write_band(tmp_path / "a" / f"{b}.tif", dn)  # renamed copy, too dark to tell alone
    before, after = read_scene(tmp_path / "b"), read_scene(tmp_path / "a")
    assert after.meta["radiometry"]["B08"]["scale"] == pytest.approx(1e-4)  # as read
    rep = compare_report(compare(before, after, register=False), (before, after))
    assert rep["inputs"]["after"]["radiometry"]["B08"]["scale"] == pytest.approx(1 / 65535)  # as used
    assert rep["inputs"]["after"]["source"] == str(tmp_path / "a")


def test_two_dated_chips_whose_offset_guesses_differ_are_read_alike(tmp_path):
    """Chips in date-named folders, reflectance x 10000 without offset: the darker date has 3 % of B02 below
    DN 1000 and drops the date's offset, the other (gain 1.2) keeps it and would read 0.1 too dark."""
    from imgdiff.io.read import harmonise_scaling

    rng = np.random.default_rng(3)
    dn = rng.uniform(900, 2600, (40, 40))
    dn[:, :2] = 850  # a dark edge: 5 % of the pixels below DN 1000 before, none after the gain
    for day, data in (("2024-12-03", dn), ("2024-12-13", dn * 1.2)):
        (tmp_path / day).mkdir()
        for b in ("B02", "B03", "B04"):
            write_band(tmp_path / day / f"{b}.tif", data.astype(np.uint16))
    before, after = read_scene(tmp_path / "2024-12-03"), read_scene(tmp_path / "2024-12-13")
    assert before.meta["radiometry"]["B02"]["offset"] == 0.0 and after.meta["radiometry"]["B02"]["offset"] == -0.1
    b, a = harmonise_scaling(before, after)
    assert a.meta["radiometry"]["B02"]["offset"] == 0.0 and b is before
    assert_allclose(np.median(a.bands["B02"]) / np.median(b.bands["B02"]), 1.2, rtol=0.01)


def test_a_date_with_raw_export_names_holding_x10000_numbers_is_read_as_x10000_beside_a_real_export(tmp_path):
    from imgdiff.io.read import harmonise_scaling

    rng = np.random.default_rng(4)
    refl = np.where(rng.random((40, 40)) < 0.5, rng.uniform(0.02, 0.06, (40, 40)), rng.uniform(0.1, 0.3, (40, 40)))
    name = "2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_{}_(Raw).tiff"
    for folder, scale in (("export", 65535), ("script", 10000)):  # a script kept the names, wrote x 10000
        (tmp_path / folder).mkdir()
        for b in ("B02", "B03", "B04"):
            write_band(tmp_path / folder / name.format(b), (refl * scale).astype(np.uint16))
    export, script = read_scene(tmp_path / "export"), read_scene(tmp_path / "script")
    assert script.meta["radiometry"]["B02"]["scale"] == pytest.approx(1 / 65535)  # alone: the name decides
    b, a = harmonise_scaling(export, script)
    assert b is export and a.meta["radiometry"]["B02"]["scale"] == pytest.approx(1e-4)
    assert_allclose(np.median(a.bands["B04"]), np.median(export.bands["B04"]), rtol=0.01)
    assert harmonise_scaling(export, export)[1] is export  # two real exports: left alone
    # a hazy or glinting date over dark water: several times brighter, but by an offset (blue 0.03 -> 0.15,
    # NIR 0.01 -> 0.13): the ratio differs from band to band, so it is no x 10000 date
    (tmp_path / "hazy").mkdir()
    water = {"B02": 0.03, "B03": 0.02, "B04": 0.012}
    for b, level in water.items():
        write_band(tmp_path / "hazy" / name.format(b), np.full((40, 40), round(level * 65535), np.uint16))
        write_band(tmp_path / "export" / name.format(b), np.full((40, 40), round((level + 0.12) * 65535), np.uint16))
    hazy, glint = read_scene(tmp_path / "hazy"), read_scene(tmp_path / "export")
    hb, ha = harmonise_scaling(hazy, glint)
    assert hb is hazy and ha is glint


def test_a_south_up_raster_is_read_onto_its_north_up_grid_unchanged(tmp_path):
    from affine import Affine

    rng = np.random.default_rng(5)
    data = rng.integers(500, 3000, (30, 20)).astype(np.uint16)
    (tmp_path / "n").mkdir()
    (tmp_path / "s").mkdir()
    for b in ("B02", "B03"):
        write_band(tmp_path / "n" / f"{b}.tif", data, transform=from_origin(600000, 3870300, 10, 10))
        # the same pixels with rows running north, as some xarray writers leave them
        write_band(tmp_path / "s" / f"{b}.tif", data[::-1].copy(), transform=Affine(10, 0, 600000, 0, 10, 3870000))
    north, south = read_scene(tmp_path / "n"), read_scene(tmp_path / "s")
    assert south.transform == north.transform and south.bounds == north.bounds
    assert_allclose(south.bands["B02"], north.bands["B02"], atol=1e-6)
    assert south.valid.all()


def test_a_gdal_mask_band_marks_pixels_as_no_data(tmp_path):
    data = np.full((20, 20), 1500, np.uint16)
    data[:, :5] = 9999  # junk under the mask
    for b in ("B02", "B03"):
        write_band(tmp_path / f"{b}.tif", data)
        with rasterio.open(tmp_path / f"{b}.tif", "r+") as ds:
            mask = np.full((20, 20), 255, np.uint8)
            mask[:, :5] = 0
            ds.write_mask(mask)
    s = read_scene(tmp_path)
    assert not s.valid[:, :5].any() and s.valid[:, 5:].all()
    assert np.isnan(s.bands["B02"][:, :5]).all()


def test_two_known_dates_on_either_side_of_the_baseline_change_keep_their_own_offsets(tmp_path):
    """2021 without the +1000 DN offset, 2023 with it: a hazier older date (0.1 brighter) is no reason to
    read the newer one without its offset."""
    from imgdiff.io.read import harmonise_scaling

    for day, level in (("2021-06-01", 2500), ("2023-06-01", 2400)):
        (tmp_path / day).mkdir()
        for b in ("B02", "B03", "B04"):
            write_band(tmp_path / day / f"{b}.tif", dn(level))
    before, after = read_scene(tmp_path / "2021-06-01"), read_scene(tmp_path / "2023-06-01")
    b, a = harmonise_scaling(before, after)
    assert b.meta["radiometry"]["B02"]["offset"] == 0.0 and a.meta["radiometry"]["B02"]["offset"] == -0.1
    assert_allclose(np.median(a.bands["B02"]), 0.14, atol=0.003)


def test_a_processing_baseline_tag_gives_the_offset_and_info_shows_it(tmp_path):
    from imgdiff.io.inspect import describe_scene

    d = tmp_path / "l_20180101"
    d.mkdir()
    for b in ("B02", "B03", "B04"):
        write_band(d / f"{b}.tif", dn(2000), tags={"PROCESSING_BASELINE": "05.00"})
    s = read_scene(d)
    assert s.meta["radiometry"]["B02"]["offset"] == -0.1 and "processing baseline" in s.meta["radiometry"]["B02"]["source"]
    assert describe_scene(d)["processing_baseline"] == "05.00"


def test_float_digital_numbers_keep_zero_fill_as_no_data(tmp_path):
    for dtype in ("uint16", "float32"):
        d = tmp_path / f"fill_{dtype}_20230101"
        d.mkdir()
        for b, v in (("B02", 2400), ("B03", 2300), ("B04", 2200), ("B08", 3500)):
            a = dn(v, (64, 64)).astype(dtype)
            a[:8] = 0  # zero-fill: outside the swath
            write_band(d / f"{b}.tif", a)
    u, f = read_scene(tmp_path / "fill_uint16_20230101"), read_scene(tmp_path / "fill_float32_20230101")
    assert u.valid_fraction() == f.valid_fraction() == 56 / 64
    assert f.meta["radiometry"]["B02"]["offset"] == u.meta["radiometry"]["B02"]["offset"] == -0.1
    assert_allclose(np.nanmedian(f.bands["B02"]), np.nanmedian(u.bands["B02"]), atol=1e-4)


@pytest.mark.parametrize("value", [65535, 20000], ids=["saturated-dn", "reflectance-2"])
def test_a_saturated_20m_pixel_stays_on_the_four_10m_pixels_it_covers(tmp_path, value):
    """One 20 m pixel of B11 at the product's saturation value (DN 65535) or above the saturation
    reflectance (2.0) on flat ground (0.2): it covers its 2 x 2 pixels of 10 m and no other pixel
    sees any of it (bilinearly they would take 3-56 % of it: up to 1.2 reflectance around it),
    read whole, by window or strip by strip."""
    from imgdiff.tiles import StripReader, work_grid

    for b in ("B02", "B03", "B04", "B08"):
        write_band(tmp_path / f"{b}.tif", np.full((40, 40), 1000, "uint16"), transform=TR10)
    b11 = np.full((20, 20), 2000, "uint16")
    b11[9, 6] = value
    write_band(tmp_path / "B11.tif", b11, transform=TR20)
    covered = np.zeros((40, 40), bool)
    covered[18:20, 12:14] = True
    whole = read_scene(tmp_path).bands["B11"]
    with StripReader(tmp_path, work_grid(tmp_path)) as reader:
        strip = reader.read((4, 6, 36, 38)).bands["B11"]  # x0, y0, x1, y1
    for got, inside in ((whole, covered), (strip, covered[6:38, 4:36])):
        assert_allclose(got[inside], value / 10000, rtol=1e-6)
        assert_allclose(got[~inside], 0.2, atol=1e-6)


def test_float_digital_numbers_mark_saturation_at_their_final_scaling(tmp_path):
    """Float bands holding digital numbers are read first as reflectance (every pixel above 1.6),
    then rescaled: which 20 m pixels are saturated is decided at that final scaling, as for the
    same numbers stored as integers."""
    rng = np.random.default_rng(3)
    b11 = (1000 + 100 * np.arange(20)[None, :] + rng.integers(0, 300, (20, 20))).astype("uint16")
    b11[9, 6] = 20000  # reflectance 2.0: saturated
    for dtype in ("uint16", "float32"):
        d = tmp_path / dtype
        d.mkdir()
        for b, v in (("B02", 1000), ("B03", 1200), ("B04", 1400), ("B08", 3000)):
            write_band(d / f"{b}.tif", dn(v, (40, 40)).astype(dtype), transform=TR10)
        write_band(d / "B11.tif", b11.astype(dtype), transform=TR20)
    u, f = read_scene(tmp_path / "uint16"), read_scene(tmp_path / "float32")
    assert f.meta["radiometry"]["B11"]["scale"] == u.meta["radiometry"]["B11"]["scale"] == 1e-4
    assert_allclose(f.bands["B11"], u.bands["B11"], atol=1e-6)
    assert_allclose(f.bands["B11"][18:20, 12:14], 2.0, rtol=1e-6)
    rest = np.ones((40, 40), bool)
    rest[18:20, 12:14] = False
    assert f.bands["B11"][rest].max() <= b11[b11 < 20000].max() / 10000 + 1e-6  # nothing of 2.0 spread


def _pair_with_a_lit_20m_pixel(tmp_path, case: str, value: int):
    """Two dates of bands B02-B04 (10 m) and B11 (20 m, flat), whose scalings harmonise_scaling makes
    alike by rescaling the second date; one 20 m pixel of the second date's B11 at DN ``value``.

    ``case``: "x10000-named-raw" (the second date holds x 10000 numbers under a raw export's
    names: read as x 65535, then as x 10000), "raw-renamed" (a renamed copy of a raw export:
    read as x 10000, then as x 65535), "offset" (two dated chips whose guessed baseline-04 offsets
    differ: the second read with -0.1, then without). Returns the two folders and the scale and
    offset the second date ends with."""
    rng = np.random.default_rng(11)
    refl = rng.uniform(0.05, 0.3, (40, 40))
    raw = "2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_{}_(Raw).tiff"
    if case == "x10000-named-raw":
        dates, final = (("export", raw, 65535, 1.0), ("script", raw, 10000, 1.0)), (1e-4, 0.0)
    elif case == "raw-renamed":
        dates, final = (("export", raw, 65535, 1.0), ("copy", "{}.tif", 65535, 1.0)), (1 / 65535, 0.0)
    else:  # dark chips: the first date drops the offset its date gives, the second (gain 1.2) keeps it
        refl = rng.uniform(0.09, 0.26, (40, 40))
        refl[:, :2] = 0.085  # 5 % below DN 1000 on the first date, none on the second
        dates, final = (("2024-12-03", "{}.tif", 10000, 1.0), ("2024-12-13", "{}.tif", 10000, 1.2)), (1e-4, 0.0)
    folders = []
    for k, (folder, name, scale, gain) in enumerate(dates):
        d = tmp_path / case / folder
        d.mkdir(parents=True)
        for b in ("B02", "B03", "B04"):
            write_band(d / name.format(b), np.round(refl * gain * scale).astype(np.uint16), transform=TR10)
        b11 = np.full((20, 20), round(0.25 * gain * scale), np.uint16)
        if k == 1:
            b11[9, 6] = value
        write_band(d / name.format("B11"), b11, transform=TR20)
        folders.append(d)
    return folders, final


@pytest.mark.parametrize("case,value", [("x10000-named-raw", 20000), ("offset", 16500), ("raw-renamed", 20000)])
def test_a_pair_harmonised_after_reading_reads_its_20m_bands_as_at_the_final_scaling(tmp_path, case, value):
    """harmonise_scaling rescales one date of a pair after reading it; its 20 m band, resampled when
    read, reads as when read directly at the final scaling (read_scene scale=, offset=): a 20 m pixel
    that the new scaling saturates (DN 20000 read as x 10000: reflectance 2.0; DN 16500 without the
    -0.1 offset: 1.65) stays on the four 10 m pixels it covers and none of its light reaches the
    others (rescaled as read, it lit the 16 pixels around by 0.08-0.98 and none read saturated);
    one it no longer saturates (DN 20000 read as x 65535) is resampled as any other. The pixels
    its kernel does not reach are bit-identical to the band rescaled as read."""
    from imgdiff.io.harmonise import _harmonised
    from imgdiff.io.read import harmonise_scaling
    from imgdiff.radiometry import saturation_mask

    (first, second), (scale, offset) = _pair_with_a_lit_20m_pixel(tmp_path, case, value)
    before, after = read_scene(first), read_scene(second)
    _, ha = harmonise_scaling(before, after)
    rad = ha.meta["radiometry"]["B11"]
    assert (rad["scale"], rad["offset"]) == pytest.approx((scale, offset)), rad
    as_read = after.meta["radiometry"]["B11"]
    assert (rad["scale"], rad["offset"]) != (as_read["scale"], as_read["offset"])
    old = _harmonised(before, after)[1].bands["B11"]  # rescaled as read: as harmonised before
    direct = read_scene(second, scale=scale, offset=offset).bands["B11"]
    assert_allclose(ha.bands["B11"], direct, rtol=0, atol=1e-6)
    reach = np.zeros((40, 40), bool)
    reach[17:21, 11:15] = True  # the 10 m pixels whose bilinear kernel takes in the 20 m pixel
    np.testing.assert_array_equal(ha.bands["B11"][~reach], old[~reach])
    covered = np.zeros((40, 40), bool)
    covered[18:20, 12:14] = True
    if case == "raw-renamed":  # not saturated at x 65535: bilinear, as any pixel
        assert not saturation_mask(ha).any() and np.abs(old - direct).max() > 0.01
        return
    level = 0.25 * (1.2 if case == "offset" else 1.0)
    assert_allclose(ha.bands["B11"][covered], value * scale + offset, rtol=1e-6)
    np.testing.assert_array_equal(saturation_mask(ha), covered)
    assert_allclose(ha.bands["B11"][~covered], level, atol=2e-4)
    lit = np.abs(old - level) > 0.05
    assert lit.sum() == 16 and not saturation_mask(replace(ha, bands={"B11": old})).any()  # as it was


def test_a_harmonised_20m_band_whose_file_is_gone_is_left_as_rescaled(tmp_path):
    from imgdiff.io.harmonise import _harmonised
    from imgdiff.io.read import harmonise_scaling

    (first, second), _ = _pair_with_a_lit_20m_pixel(tmp_path, "x10000-named-raw", 20000)
    before, after = read_scene(first), read_scene(second)
    for f in second.glob("*B11*"):
        f.unlink()
    np.testing.assert_array_equal(harmonise_scaling(before, after)[1].bands["B11"],
                                  _harmonised(before, after)[1].bands["B11"])
