"""Options shared by several commands, in one place (after rasterio's ``rio/options.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from imgdiff.coregister import MAX_SHIFT_PX, MAX_SHIFT_RANGE_PX
from imgdiff.errors import ImgdiffError
from imgdiff.io.bands import normalise_band_name
from imgdiff.io.georeferencing import lonlat_bbox_problem
from imgdiff.io.read import one_line
from imgdiff.io.write import finite_or_null


def _parse_bands(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names: list[str] = []
    for part in value.split(","):
        n = normalise_band_name(part)
        if n is None:
            raise click.BadParameter(f"{part!r} is not a Sentinel-2 band; use names like B02,B03,B04,B08")
        if n in names:
            raise click.BadParameter(f"{value}: {n} is named twice; name each band once, in order")
        names.append(n)
    return names


def _parse_bbox(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """``--bbox W,S,E,N`` (commas or spaces) as four floats, checked by the library's rules
    (:func:`imgdiff.io.georeferencing.lonlat_bbox_problem`)."""
    if not value:
        return None
    try:
        parts = tuple(float(v) for v in value.replace(" ", ",").split(",") if v)
    except ValueError:
        parts = ()
    problem = lonlat_bbox_problem(parts, "--bbox")
    if problem is not None:
        raise click.BadParameter(f"{value}: {problem}; 'imgdiff info SCENE' prints the scene's lon/lat bounds")
    return parts


bands_opt = click.option("--bands", callback=_parse_bands, help="Comma-separated bands, e.g. B02,B03,B04,B08.")
bbox_opt = click.option("--bbox", callback=_parse_bbox, metavar="W,S,E,N", help="Read only this lon/lat window.")
json_opt = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout, nothing else.")
overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace existing outputs.")


def max_shift_opt(more_help: str = "") -> Any:
    """``--max-shift PX`` of the commands that co-register (``max_shift`` of :func:`imgdiff.coregister`)."""
    return click.option("--max-shift", type=click.FloatRange(*MAX_SHIFT_RANGE_PX), default=MAX_SHIFT_PX,
                        show_default=True, help="Largest plausible shift in pixels." + more_help)


def check_max_shift_applies(ctx: click.Context, no_coregister: bool, max_shift: float) -> None:
    """Refuse ``--max-shift`` given together with ``--no-coregister`` (a usage error: no shift is sought)."""
    if no_coregister and given(ctx, "max_shift"):
        raise click.UsageError(f"--max-shift {max_shift:g} does not apply with --no-coregister (no shift is sought)")


def given(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` (its parameter name) was given on the command line, not left at its default."""
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


@contextmanager
def steps(labels: Sequence[str], enabled: bool) -> Iterator[Any]:
    """A progress bar over named pipeline steps, shown only on a terminal.

    Yields a callable ``advance(label)`` to call as each step starts.
    """
    if not enabled:
        yield lambda label: None
        return
    with click.progressbar(length=len(labels), label="imgdiff", file=sys.stderr,
                           item_show_func=lambda x: x) as bar:
        state = {"n": 0}

        def advance(label: str) -> None:
            if state["n"]:
                bar.update(1, label)
            else:
                bar.update(0, label)
            state["n"] += 1

        yield advance
        bar.update(len(labels) - bar.pos)


@contextmanager
def counter(length: int, label: str, enabled: bool) -> Iterator[Any]:
    """A progress bar over ``length`` items on stderr when ``enabled``; yields ``tick(name)`` (a no-op otherwise)."""
    if not enabled:
        yield lambda name=None: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield lambda name=None: bar.update(1)


def show_progress(as_json: bool) -> bool:
    """Progress goes to stderr only on an interactive terminal and never in --json mode."""
    return not as_json and sys.stderr.isatty()


@contextmanager
def naming(*paths: Any) -> Iterator[None]:
    """Put ``paths`` in front of an :class:`ImgdiffError` of the block whose message names none of them.

    Detectors judge a :class:`~imgdiff.scene.Scene`, not a file ("vessel detection needs at least
    one of B02, ..."); the user must learn which scene, chip or claims file that was.
    """
    try:
        yield
    except ImgdiffError as e:
        names = [str(p) for p in paths if p is not None]
        if not names or any(n in str(e) for n in names):
            raise
        raise type(e)(f"{' and '.join(names)}: {one_line(e)}") from None


def echo_json(obj: Any, **kw: Any) -> None:
    """The one JSON object of ``--json`` on stdout, strict JSON (NaN and infinities as null)."""
    import json

    click.echo(json.dumps(finite_or_null(obj), allow_nan=False, **kw))


def pair_warnings(report: dict, method: str | None, hint: str = "check the order of BEFORE and AFTER") -> list[str]:
    """What the user must know about a compared pair (report.json of ``compare`` or ``verify``): a failed or
    unreliable co-registration, a band one date lacks, a change-method fallback, one scene given twice, dates
    in the wrong order."""
    r, c, inputs = report["coregistration"], report["change"], report["inputs"]
    out = [f"co-registration: {n}" for n in r.get("notes") or []]
    if r.get("method") != "none" and r.get("reliability") is not None and r["reliability"] < 0.5 and not out:
        out.append(f"co-registration is unreliable (reliability {r['reliability']:.2f})")
    have = {d: inputs[d].get("bands") or [] for d in ("before", "after")}
    for d, other in (("before", "after"), ("after", "before")):
        missing = [b for b in have[other] if b not in have[d]]
        if missing and have[d]:
            out.append(f"the {d} scene has no {', '.join(missing)} ({inputs[d].get('source')}) and the {other} "
                       f"scene has: the dates are compared on the bands both have")
    if (method or "mlp") == "mlp" and c.get("method") == "irmad":
        out.append("no shipped mlp change model fits these bands (it needs B02, B03, B04, B08): used irmad "
                   "(report.json change.method)")
    sources = [inputs[d].get("source") for d in ("before", "after")]
    if all(sources) and Path(sources[0]).resolve() == Path(sources[1]).resolve():
        out.append(f"before and after are the same scene ({sources[0]}): nothing can have changed")
    out += date_order_warnings(inputs["before"].get("date"), inputs["after"].get("date"), hint)
    return out


def date_order_warnings(before: str | None, after: str | None, hint: str = "check the order of BEFORE and AFTER"
                        ) -> list[str]:
    """A warning when the before scene was acquired after the after scene (ISO dates; unknown: none)."""
    if before and after and str(before) > str(after):
        return [f"the before scene ({before}) was acquired after the after scene ({after}); {hint}"]
    return []
