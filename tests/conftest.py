"""Shared fixtures: the shared data folder, and small rasters built in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from imgdiff.data import data_dir


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``IMGDIFF_DATA_DIR``). Missing: skip locally, fail under CI=true."""
    d = data_dir()
    if not (d / "README.md").is_file():
        msg = f"shared data not found at {d}; set IMGDIFF_DATA_DIR"
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return d


def need(path: Path) -> Path:
    """A dataset inside the shared folder: skip locally if absent, fail under CI=true."""
    if not path.exists():
        msg = f"dataset {path} is missing"
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def write_band(path: Path, data: np.ndarray, *, crs="EPSG:32636", transform=None, nodata=None,
               descriptions=None, tags=None) -> Path:
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF."""
    arr = data if data.ndim == 3 else data[None]
    transform = transform or from_origin(600000, 3870000, 10, 10)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(arr)
        for i, d in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, d)
        if tags:
            ds.update_tags(**tags)
    return path


def water_scene(objects=(), cloud=None, seed=0):
    """40 x 40 px water scene (B02 B03 B04 B08, UTM 36N, 10 m) with bright boxes (x0, y0, x1, y1) and an
    optional opaque cloud box; the noise depends on ``seed`` (two dates of one place)."""
    from affine import Affine
    from rasterio.crs import CRS

    from imgdiff.scene import Scene

    rng = np.random.default_rng(seed)
    bands = {}
    for b, level in (("B02", 0.07), ("B03", 0.05), ("B04", 0.035), ("B08", 0.02)):
        a = level + rng.normal(0, 0.002, (40, 40))
        for x0, y0, x1, y1 in objects:
            a[y0:y1, x0:x1] = 0.15
        if cloud is not None:
            x0, y0, x1, y1 = cloud
            a[y0:y1, x0:x1] = 0.5
        bands[b] = a.astype("float32")
    return Scene(bands, CRS.from_epsg(32636), Affine(10, 0, 700000, 0, -10, 3900000), np.ones((40, 40), bool))
