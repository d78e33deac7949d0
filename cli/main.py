"""The ``imgdiff`` command group: set-up shared by every command, and error handling."""

from __future__ import annotations

import logging
import sys

import click
from rasterio.errors import RasterioError

import imgdiff
from imgdiff.errors import ImgdiffError
from imgdiff.io.read import one_line

from .compare import compare_cmd
from .coregister import coregister_cmd
from .detect import detect_cmd
from .eval import eval_group
from .fetch import fetch_cmd
from .info import info_cmd
from .samples import samples_cmd
from .search import search_cmd
from .verify import verify_cmd
from .watch import watch_cmd


class ImgdiffGroup(click.Group):
    """A click group that turns imgdiff and raster errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (ImgdiffError, RasterioError) as e:
            if ctx.obj and ctx.obj.get("verbose", 0) > 1:
                raise
            click.echo(f"imgdiff: error: {one_line(e)}", err=True)
            ctx.exit(2)


def _show_versions(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import cv2
    import numpy
    import onnxruntime
    import rasterio
    import skimage

    click.echo(f"imgdiff {imgdiff.__version__}")
    click.echo(f"python {sys.version.split()[0]}")
    click.echo(f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})")
    click.echo(f"numpy {numpy.__version__}")
    click.echo(f"opencv {cv2.__version__}")
    click.echo(f"scikit-image {skimage.__version__}")
    click.echo(f"onnxruntime {onnxruntime.__version__} (the detectors' networks)")
    ctx.exit(0)


@click.group(cls=ImgdiffGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(imgdiff.__version__, prog_name="imgdiff")
@click.option("--show-versions", is_flag=True, expose_value=False, is_eager=True, callback=_show_versions,
              help="Show versions of imgdiff and its libraries, then exit.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv also shows tracebacks).")
@click.option("-q", "--quiet", count=True, help="Less log output.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Sentinel-2 before/after change evidence: co-register, difference, count, verify claims."""
    level = max(logging.DEBUG, logging.WARNING - 10 * (verbose - quiet))
    logging.basicConfig(level=level, format="imgdiff: %(levelname)s: %(message)s", stream=sys.stderr)
    if verbose < 2:  # -vv shows the libraries' chatter too
        for h in logging.getLogger().handlers:
            if getattr(h, "stream", None) is sys.stderr and not any(isinstance(f, QuietLibraries) for f in h.filters):
                h.addFilter(QuietLibraries())
    ctx.obj = {"verbose": verbose}


class QuietLibraries(logging.Filter):
    """Keep only warnings and errors of chatty libraries (dask.distributed) on the terminal.

    dask sets its ``distributed`` logger to INFO when it is imported (after this set-up), and its
    records reach the root handler: 25-40 lines of cluster start-up and shut-down per ``watch``
    run. A filter on the handler holds whatever level dask gives its loggers.
    """

    PREFIXES = ("distributed", "tornado", "bokeh")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(self.PREFIXES)


cli.add_command(info_cmd)
cli.add_command(compare_cmd)
cli.add_command(coregister_cmd)
cli.add_command(eval_group)
cli.add_command(search_cmd)
cli.add_command(fetch_cmd)
cli.add_command(detect_cmd)
cli.add_command(watch_cmd)
cli.add_command(verify_cmd)
cli.add_command(samples_cmd)
# Further commands register here, one module each.


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="imgdiff")
