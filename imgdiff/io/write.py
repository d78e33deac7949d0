"""Writers. Every output goes to a temporary name in its folder and is moved into place."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors

from ..errors import ImgdiffError, OutputError
from ..grid import Grid
from .layout import read_failure

#: Creation options for tiled, compressed GeoTIFFs.
GTIFF_OPTIONS: dict[str, Any] = {
    "driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    "predictor": 2, "BIGTIFF": "IF_SAFER",
}


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = _mkstemp(path.name, path.parent, path)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _writing(path):
            yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _mkstemp(name: str, folder: Path, target: Path) -> tuple[int, str]:
    """A temporary file for ``target`` in ``folder``; :class:`OutputError` naming ``target`` when it cannot be made."""
    try:
        return tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except FileNotFoundError:
        raise OutputError(f"{target}: folder {folder} does not exist") from None
    except OSError as e:
        raise OutputError(f"{target}: cannot write in {folder} ({e.strerror})") from None


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    """A block that writes ``target``: its ``OSError`` (a full disk, a quota) becomes an :class:`OutputError`
    naming ``target``, with the OS's reason or the GDAL error behind rasterio's "Write failed"; imgdiff's own
    errors (an :class:`~imgdiff.errors.InputError` from reading an input while writing, an OSError too) pass."""
    try:
        yield
    except ImgdiffError:
        raise
    except OSError as e:
        raise OutputError(f"{target}: cannot write ({e.strerror or read_failure(e)})") from None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def check_outputs(outdir: str | Path, names: Iterable[str], overwrite: bool, *, create: bool = True) -> Path:
    """Refuse to replace existing outputs unless ``overwrite``; create ``outdir`` if ``create``."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory")
    folders = [n for n in names if (outdir / n).is_dir()]
    if folders:  # it could not be replaced by a file, and the other outputs would be replaced without it
        raise OutputError(f"{outdir}: {', '.join(folders)} {'is a folder' if len(folders) == 1 else 'are folders'}, "
                          "where an output file goes; move it away")
    existing = [n for n in names if (outdir / n).exists()]
    if existing and not overwrite:
        raise OutputError(f"{outdir}: {', '.join(existing)} exist already; pass --overwrite to replace them")
    if not create:
        return outdir
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{outdir}: cannot create output folder ({e.strerror})") from None
    return outdir


def write_outputs(outdir: Path, writers: Mapping[str, Callable[[Path], None]]) -> list[Path]:
    """Run each writer on a temporary file, then move all of them into place together.

    If any writer fails, nothing is moved and the temporaries are removed; a writer's ``OSError`` (a
    full disk, a quota) becomes an :class:`OutputError` naming the output, unless it is imgdiff's own
    (an :class:`~imgdiff.errors.InputError` from reading an input while writing), which passes as it is.
    """
    temps: dict[str, Path] = {}
    try:
        for name, write in writers.items():
            fd, tmp = _mkstemp(name, outdir, outdir / name)
            os.close(fd)
            temps[name] = Path(tmp)
            with _writing(outdir / name):
                write(temps[name])
        folders = [outdir / name for name in temps if (outdir / name).is_dir()]
        if folders:  # os.replace would fail on it after replacing the outputs before it
            raise OutputError(f"{folders[0]}: is a folder, where an output file goes; move it away")
        done = []
        mode = 0o666 & ~_umask()
        for name, tmp in temps.items():
            os.chmod(tmp, mode)
            os.replace(tmp, outdir / name)
            done.append(outdir / name)
        return done
    finally:
        for tmp in temps.values():
            if tmp.exists():
                tmp.unlink()


def write_geotiff(
    path: str | Path,
    bands: Sequence[np.ndarray],
    grid: Grid,
    *,
    descriptions: Sequence[str] | None = None,
    nodata: float | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Write arrays of one dtype as a tiled, deflate-compressed GeoTIFF on ``grid``."""
    dtype = np.result_type(*[b.dtype for b in bands])
    profile = dict(GTIFF_OPTIONS, width=grid.width, height=grid.height, count=len(bands), dtype=dtype,
                   crs=grid.crs, transform=grid.transform, nodata=nodata)
    if dtype.kind == "f":
        profile["predictor"] = 3
    if grid.width < 256 or grid.height < 256:
        profile.pop("blockxsize"), profile.pop("blockysize")
        profile["tiled"] = False
    with rasterio.open(path, "w", **profile) as ds:
        for i, b in enumerate(bands, start=1):
            ds.write(b.astype(dtype, copy=False), i)
            if descriptions:
                ds.set_band_description(i, descriptions[i - 1])
        if tags:
            ds.update_tags(**tags)
    check_written(path)


def check_written(path: str | Path) -> None:
    """Read back the last block of a raster just written (GDAL does not raise when a full disk cuts the
    file short on closing: the truncated file would be moved into place as if it were whole).

    Raises
    ------
    OSError
        If the file cannot be opened or its last block read (``errno.EIO``; :func:`write_outputs` and
        :func:`atomic_path` turn it into an :class:`OutputError` naming the output).
    """
    try:
        with rasterio.open(path) as ds:
            _, window = list(ds.block_windows(ds.count))[-1]
            ds.read(ds.count, window=window)
    except rasterio.errors.RasterioError as e:
        raise OSError(errno.EIO, f"it reads back cut short, is the disk full? ({read_failure(e)})") from None


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON (UTF-8, indented, keys in insertion order); NaN and infinities as null (:func:`finite_or_null`)."""
    text = json.dumps(finite_or_null(obj), indent=2, default=_json_default, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (Python or numpy) in its dicts, lists and tuples replaced by None.

    JSON has no NaN or Infinity: ``json.dumps`` writes them as bare words that strict parsers (jq,
    JavaScript, Go) refuse. An open-ended bin edge or an undefined threshold becomes null.
    """
    if isinstance(obj, (float, np.floating)):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return finite_or_null(obj.tolist())
    return obj


def write_text(path: str | Path, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return str(o)
