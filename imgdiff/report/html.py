"""Quicklooks (true colour, detections, change overlay) and the self-contained HTML report.

Every image is a PNG embedded as base64 in the page, so ``report.html`` is one file that
opens anywhere. Both dates share one contrast stretch (1-99.7 percentiles of the clear pixels
of both), so brightness differences in the quicklooks are real differences.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw

from ..detect.base import Detections
from ..match import match_objects
from ..scene import Scene

TEMPLATES = Path(__file__).resolve().parent / "templates"
RGB_BANDS = ("B04", "B03", "B02")
#: Box colours by status across dates.
STATUS_COLOURS = {"stayed": (255, 214, 0), "departed": (255, 40, 40), "arrived": (0, 230, 255)}
ZONE_COLOUR = (255, 255, 255)
CHANGE_COLOUR = (255, 30, 30)
MASKED_COLOUR = (40, 60, 140)


# --------------------------------------------------------------------------- arrays -> images
def stretch_limits(scenes: Sequence[Scene], masks: Sequence[np.ndarray] | None = None,
                   bands: Sequence[str] = RGB_BANDS, pct: tuple[float, float] = (1.0, 99.7)) -> np.ndarray:
    """Common display limits (bands, 2): percentiles of the pixels of all scenes within ``masks``."""
    lims = []
    for b in bands:
        vals = []
        for i, s in enumerate(scenes):
            if b not in s.bands:
                continue
            m = s.valid if masks is None else (masks[i] & s.valid)
            v = s.bands[b][m]
            vals.append(v[np.isfinite(v)])
        v = np.concatenate(vals) if vals else np.array([0.0, 1.0])
        if v.size < 2:
            v = np.array([0.0, 1.0])
        lo, hi = np.percentile(v, pct)
        lims.append((float(lo), float(hi if hi > lo else lo + 1e-3)))
    return np.array(lims)


def true_colour(scene: Scene, limits: np.ndarray, bands: Sequence[str] = RGB_BANDS) -> np.ndarray:
    """(rows, cols, 3) uint8 true-colour image with the given limits; no-data dark grey.

    Uses the first available band for channels a scene lacks (grey rendering).
    """
    have = [b for b in bands if b in scene.bands] or list(scene.bands)[:1]
    chans = []
    for i, b in enumerate(bands):
        a = scene.bands[b if b in scene.bands else have[0]]
        lo, hi = limits[i]
        chans.append(np.clip((a - lo) / (hi - lo), 0, 1) ** (1 / 1.5))
    rgb = (np.nan_to_num(np.dstack(chans), nan=0.0) * 255).astype(np.uint8)
    rgb[~scene.valid] = (30, 30, 30)
    return rgb


def change_image(background: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Change overlay: dimmed grey background, changed pixels red, not-assessed pixels blue."""
    grey = background.mean(axis=2, keepdims=True) * 0.6
    out = np.repeat(grey, 3, axis=2).astype(np.uint8)
    out[mask] = CHANGE_COLOUR
    out[~valid] = (out[~valid] * 0.4 + np.array(MASKED_COLOUR) * 0.6).astype(np.uint8)
    return out


def _ring_px(geom: Any, transform: Affine) -> list[list[tuple[float, float]]]:
    inv = ~transform
    rings = []
    for p in getattr(geom, "geoms", [geom]):
        if p.is_empty:
            continue
        rings.append([tuple(inv * c) for c in p.exterior.coords])
    return rings


def draw(rgb: np.ndarray, *, scale: int, zones: Mapping[str, Any] | None = None, transform: Affine | None = None,
         boxes: Iterable[tuple[tuple[float, float, float, float], tuple[int, int, int]]] = (),
         origin: tuple[int, int] = (0, 0), labels: bool = True) -> Image.Image:
    """Upscale ``rgb`` by an integer factor and draw zone outlines and boxes (pixel coords of the full grid).

    ``origin`` is the (col, row) of ``rgb``'s first pixel in the full grid (for crops).
    """
    im = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
    d = ImageDraw.Draw(im)
    ox, oy = origin

    def px(x: float, y: float) -> tuple[float, float]:
        return ((x - ox) * scale, (y - oy) * scale)

    if zones and transform is not None:
        for name, g in zones.items():
            for ring in _ring_px(g, transform):
                d.line([px(x, y) for x, y in ring], fill=ZONE_COLOUR, width=1)
            if labels and not g.is_empty:
                c = g.representative_point()
                x, y = ~transform * (c.x, c.y)
                d.text(px(x, y), name, fill=ZONE_COLOUR)
    for (x0, y0, x1, y1), colour in boxes:
        a, b = px(x0, y0)
        c, e = px(x1, y1)
        d.rectangle([a - 1, b - 1, c + 1, e + 1], outline=colour, width=2)
    return im


def png_data_uri(im: Image.Image) -> str:
    """A ``data:image/png;base64,...`` URI (deterministic PNG bytes)."""
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def zone_window(geom: Any, transform: Affine, shape: tuple[int, int], margin_px: int = 8) -> tuple[int, int, int, int]:
    """(col0, row0, col1, row1) of a zone's bounding box in pixels, with a margin, clipped to the grid."""
    inv = ~transform
    x0, y0, x1, y1 = geom.bounds
    xs, ys = zip(*(inv * (x, y) for x in (x0, x1) for y in (y0, y1)))
    c0 = min(max(0, int(math.floor(min(xs))) - margin_px), shape[1] - 1)  # a zone off the grid: its edge pixel
    r0 = min(max(0, int(math.floor(min(ys))) - margin_px), shape[0] - 1)
    c1 = min(shape[1], int(math.ceil(max(xs))) + margin_px)
    r1 = min(shape[0], int(math.ceil(max(ys))) + margin_px)
    return c0, r0, max(c1, c0 + 1), max(r1, r0 + 1)


def status_boxes(detections: Mapping[str, tuple[Detections, Detections]]) -> tuple[list, list]:
    """Boxes with colours for each date: stayed (yellow), departed (red, before), arrived (cyan, after)."""
    before, after = [], []
    for db, da in detections.values():
        m = match_objects(db, da)
        for i, _ in m.stayed:
            before.append((db.items[i].box, STATUS_COLOURS["stayed"]))
        for _, j in m.stayed:
            after.append((da.items[j].box, STATUS_COLOURS["stayed"]))
        before += [(db.items[i].box, STATUS_COLOURS["departed"]) for i in m.departed]
        after += [(da.items[j].box, STATUS_COLOURS["arrived"]) for j in m.arrived]
    return before, after


def quicklooks(v: Any, *, full_width_px: int = 480, crop_width_px: int = 300) -> dict[str, Any]:
    """PIL images of a :class:`~imgdiff.claims.Verification`.

    Returns
    -------
    dict
        ``"full"``: {"before", "after", "change"} of the whole grid with zones and boxes;
        ``"zones"``: zone name -> {"before", "after", "change"} crops.
    """
    pair = v.result.pair
    g = v.result.grid
    clear = [pair.before.valid & ~v.cloud["before"], pair.after.valid & ~v.cloud["after"]]
    lim = stretch_limits([pair.before, pair.after], clear)
    rb, ra = true_colour(pair.before, lim), true_colour(pair.after, lim)
    ch = change_image(rb, v.result.change.mask, v.result.change.valid)
    bb, ba = status_boxes(v.detections)
    zones = dict(v.zones.geometries)
    s = max(1, full_width_px // max(g.width, 1))
    out: dict[str, Any] = {"full": {
        "before": draw(rb, scale=s, zones=zones, transform=g.transform, boxes=bb),
        "after": draw(ra, scale=s, zones=zones, transform=g.transform, boxes=ba),
        "change": draw(ch, scale=s, zones=zones, transform=g.transform),
    }, "zones": {}}
    for name, geom in zones.items():
        c0, r0, c1, r1 = zone_window(geom, g.transform, (g.height, g.width))
        k = max(1, crop_width_px // max(c1 - c0, 1))
        kw = {"scale": k, "zones": {name: geom}, "transform": g.transform, "origin": (c0, r0), "labels": False}
        out["zones"][name] = {
            "before": draw(rb[r0:r1, c0:c1], boxes=bb, **kw),
            "after": draw(ra[r0:r1, c0:c1], boxes=ba, **kw),
            "change": draw(ch[r0:r1, c0:c1], **kw),
        }
    return out


# --------------------------------------------------------------------------- HTML
def _env() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              trim_blocks=True, lstrip_blocks=True)


def render_verify_html(v: Any, report: Mapping[str, Any]) -> str:
    """The self-contained HTML page of a verify report (images embedded as base64 PNG)."""
    q = quicklooks(v)
    full = {k: png_data_uri(im) for k, im in q["full"].items()}
    zones = {n: {k: png_data_uri(im) for k, im in d.items()} for n, d in q["zones"].items()}
    from ..claims import MIN_CLEAR_FRACTION, MIN_CLEAR_FRACTION_ABSENCE
    from ..detect.vessels import path_radiance_note

    return _env().get_template("verify.html.j2").render(
        r=report, full=full, zones=zones,
        haze={d: path_radiance_note(report["inputs"][d].get("path_radiance")) for d in ("before", "after")},
        limits={"min_clear": MIN_CLEAR_FRACTION, "min_clear_absence": MIN_CLEAR_FRACTION_ABSENCE}, colours={k: "#{:02x}{:02x}{:02x}".format(*c) for k, c in STATUS_COLOURS.items()},
    )
