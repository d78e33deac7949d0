"""What a scene's result depends on, and its cache key.

Each scene's result is cached under ``OUTDIR/.cache/<key>.json`` where the key is a hash
of the contents of its input files, of the reference scene, of the zones, of the
parameters (:class:`WatchParams`) and of the shipped detector models (:func:`models_digest`):
a rerun skips finished scenes, and an interrupted run resumes where it stopped. The keys of a run's scenes are computed ahead, in threads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from .. import __version__
from ..coregister import MAX_SHIFT_PX
from ..errors import ImgdiffError, InputError
from ..io.layout import one_line
from .manifest import SceneEntry


@dataclass(frozen=True)
class WatchParams:
    """Everything a scene task depends on besides the scene itself (all JSON-ready).

    Attributes
    ----------
    reference : str
        Path of the reference scene.
    detector : str
        Detector name or ``"package.module:function"``.
    zones : dict or None
        Zones as a GeoJSON FeatureCollection (lon/lat).
    bands : tuple of str or None
    bbox : (west, south, east, north) or None
    register : bool
        Co-register each scene to the reference.
    min_score : float or None
        Drop detections scoring below this (in [0, 1]).
    max_shift : float
        Largest plausible shift of a scene, in pixels of the reference grid along either axis. Not used,
        and not part of the cache key (:meth:`to_json`), without ``register``.
    """

    reference: str
    detector: str = "vessels"
    zones: dict | None = None
    bands: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    register: bool = True
    min_score: float | None = None
    max_shift: float = MAX_SHIFT_PX

    def to_json(self) -> str:
        """The parameters as JSON, keys sorted (part of each scene's cache key, :func:`scene_key`); without
        ``register``, ``max_shift`` is left out: a limit that is not used must not change the keys."""
        fields = asdict(self)
        if not self.register:
            del fields["max_shift"]
        return json.dumps(fields, sort_keys=True, default=str)


def content_hash(path: str | Path, bands: Sequence[str] | None = None) -> str:
    """BLAKE2b hex digest of the contents of the files a scene is read from.

    Raises :class:`InputError` (missing path, unknown layout) like :func:`read_scene`.
    """
    from ..io.read import find_band_sources

    sources = find_band_sources(path, bands)
    files = sorted({s.path for s in sources})
    for parent in files[0].parents:  # SAFE product metadata (date, offsets) is an input too
        mtd = sorted(parent.glob("MTD_MSIL*.xml"))
        if mtd or parent.suffix.upper() == ".SAFE" or parent == Path(path).parent:
            files += mtd[:1]
            break
    h = hashlib.blake2b(digest_size=20)
    for f in files:
        h.update(f.name.encode())
        try:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        except OSError as e:
            raise InputError(f"{f}: cannot read ({e.strerror})") from None
    return h.hexdigest()


#: The shipped detector models (network weights, rescorer, model cards): an input of every task.
MODELS_DIR = Path(__file__).resolve().parent.parent / "detect" / "models"


@lru_cache(maxsize=1)
def models_digest() -> str:
    """BLAKE2b hex digest of the names and contents of the files in :data:`MODELS_DIR`.

    Part of every cache key: a result cached with other detector weights (retrained models under
    the same version number) is computed again, not reused.
    """
    h = hashlib.blake2b(digest_size=20)
    for f in sorted(p for p in MODELS_DIR.iterdir() if p.is_file()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def scene_key(entry: SceneEntry, params: WatchParams, reference_hash: str) -> str:
    """Cache key of one scene's result: hash of its contents, the reference, parameters, version and
    detector models."""
    h = hashlib.blake2b(digest_size=16)
    for part in (content_hash(entry.path, params.bands), reference_hash, params.to_json(), entry.date.isoformat(),
                 str(entry.cloud_fraction), __version__, models_digest()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


#: Threads that compute the scenes' cache keys ahead of the tasks (file reads and hashlib release the GIL).
KEY_THREADS = 2


def _scene_keys(entries: Sequence[SceneEntry], params: WatchParams, ref_hash: str,
                threads: int = KEY_THREADS) -> Iterator[tuple[SceneEntry, str | None, str | None]]:
    """``(entry, cache key, None)`` or ``(entry, None, error)`` for each scene, in manifest order.

    The keys hash every input file (:func:`content_hash`): a few threads compute them ahead,
    so that hashing overlaps with starting the cluster and with the first scenes' work instead
    of delaying both.
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="imgdiff-key")
    try:
        futures = [pool.submit(scene_key, e, params, ref_hash) for e in entries]
        for entry, f in zip(entries, futures):
            try:
                yield entry, f.result(), None
            except (ImgdiffError, OSError) as e:
                yield entry, None, one_line(e)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
