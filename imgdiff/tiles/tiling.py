"""Tiles: cores and read windows of a raster, and the threads that work through them.

A raster is cut into *tiles* (:func:`tile_grid`). Each tile has a **core** (the tiles' cores
partition the raster: every pixel belongs to exactly one core) and a **read window**: the core
grown by ``overlap`` pixels on every side, clipped to the raster. Work is done on read windows;
results are kept only on the core. :func:`map_bounded` runs the work on threads with a bounded
number of tiles in flight, :func:`one_thread_per_worker` keeps OpenCV and BLAS to one thread each.

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from rasterio.windows import Window

#: Default tile core size in pixels (a multiple of the 256 px output block size).
TILE_SIZE = 2048
#: Tile core size of the change maps: the learned (``mlp``) method's ~40 feature planes per pixel
#: would need about 1 GB per 2048 px tile, and with 2048 px tiles even CVA peaks at 2.8 GB on a full
#: tile (tiles in flight, warps); 1024 px tiles keep every method near 1.7 GB.
MLP_TILE_SIZE = 1024
#: Default overlap for change maps, in pixels (covers the warp of a shift <= 5 px and the cubic kernel).
CHANGE_OVERLAP = 32
#: Default overlap for detection, in pixels (larger than the largest vessel, 400 m = 40 px, plus context).
DETECT_OVERLAP = 128

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Tile:
    """One tile of a tiling, in pixels of the full grid (x = column, y = row).

    Attributes
    ----------
    row, col : int
        Tile index (row of tiles, column of tiles).
    read : (x0, y0, x1, y1)
        Pixel-edge box of the read window: the core grown by the overlap, clipped to the grid.
    core : (x0, y0, x1, y1)
        Pixel-edge box of the core; the cores of a tiling partition the grid.
    """

    row: int
    col: int
    read: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def window(self) -> Window:
        """The read window as a rasterio ``Window`` (col_off, row_off, width, height)."""
        x0, y0, x1, y1 = self.read
        return Window(x0, y0, x1 - x0, y1 - y0)

    @property
    def core_window(self) -> Window:
        """The core as a rasterio ``Window``."""
        x0, y0, x1, y1 = self.core
        return Window(x0, y0, x1 - x0, y1 - y0)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices of the core inside an array of the read window."""
        rx0, ry0 = self.read[0], self.read[1]
        x0, y0, x1, y1 = self.core
        return slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0)

    def holds(self, x: float, y: float) -> bool:
        """Whether the point (x, y), in pixels of the full grid, lies in the core (half-open box)."""
        x0, y0, x1, y1 = self.core
        return x0 <= x < x1 and y0 <= y < y1


def tile_grid(shape: tuple[int, int], tile_size: int = TILE_SIZE, overlap: int = 0) -> list[Tile]:
    """Cut a grid of ``shape`` (rows, columns) into tiles.

    Parameters
    ----------
    shape : (rows, columns)
        Size of the grid in pixels.
    tile_size : int
        Core size in pixels (the last row/column of tiles may be smaller).
    overlap : int
        Pixels added on every side of a core to form its read window (clipped to the grid).

    Returns
    -------
    list of Tile
        In row-major order; their cores partition the grid.
    """
    if tile_size < 1 or overlap < 0:
        raise ValueError(f"tile_size must be >= 1 and overlap >= 0 (got {tile_size}, {overlap})")
    h, w = shape
    tiles = []
    for i, y0 in enumerate(range(0, h, tile_size)):
        for j, x0 in enumerate(range(0, w, tile_size)):
            x1, y1 = min(w, x0 + tile_size), min(h, y0 + tile_size)
            read = (max(0, x0 - overlap), max(0, y0 - overlap), min(w, x1 + overlap), min(h, y1 + overlap))
            tiles.append(Tile(i, j, read, (x0, y0, x1, y1)))
    return tiles


# --------------------------------------------------------------------------- parallel map
def map_bounded(fn: Callable[[T], R], items: Iterable[T], workers: int, *, in_flight: int | None = None) -> Iterator[R]:
    """Apply ``fn`` to ``items`` on ``workers`` threads, yielding results in completion order.

    At most ``in_flight`` (default ``2 * workers``) calls run or wait at once, which bounds
    memory when each result is large. With ``workers <= 1`` everything runs in this thread.
    Numpy, OpenCV and GDAL release the GIL in their heavy loops, so threads use the cores.
    """
    if workers <= 1:
        for it in items:
            yield fn(it)
        return
    limit = in_flight or 2 * workers
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgdiff-tile") as pool:
        pending: set[Future] = set()
        try:
            for item in it:
                pending.add(pool.submit(fn, item))
                if len(pending) >= limit:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in pending:
                f.cancel()


@contextmanager
def one_thread_per_worker(workers: int) -> Iterator[None]:
    """With ``workers`` > 1 threads doing the work, keep OpenCV and BLAS to one thread each.

    Each tile thread then uses one core; letting every call also start its own thread pool
    would put 2 x 2 threads on 2 cores. The previous settings are restored on exit.
    """
    if workers <= 1:
        yield
        return
    import cv2
    from threadpoolctl import threadpool_limits

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        cv2.setNumThreads(before)
