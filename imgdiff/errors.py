"""The imgdiff error tree.

Every error a user can cause is an :class:`ImgdiffError`. Each subclass also
inherits the matching built-in type so that ``except ValueError`` keeps
working in scripts. Messages say what went wrong, where (the file or the
scene), and how to fix it; the CLI prints them as one line and exits with 2.
"""

from __future__ import annotations


class ImgdiffError(Exception):
    """Base class of every error imgdiff raises on purpose."""


class InputError(ImgdiffError, OSError):
    """A path is missing, unreadable, not a raster, or has an unknown layout."""


class BandError(ImgdiffError, KeyError):
    """Requested bands are missing or the two scenes do not share them."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class GridError(ImgdiffError, ValueError):
    """Two grids cannot be brought together (CRS, resolution, extent)."""


class NoOverlapError(GridError):
    """Two scenes (or a scene and a bbox) share no pixel."""


class EmptySceneError(ImgdiffError, ValueError):
    """A scene (or its window) holds no valid pixel."""


class ReflectanceError(ImgdiffError, ValueError):
    """A Scene's bands are not reflectance (e.g. digital numbers of a product, 0-10000)."""


class CoregistrationError(ImgdiffError, ValueError):
    """The shift between two scenes could not be estimated reliably."""


class OutputError(ImgdiffError, OSError):
    """An output exists already (pass ``--overwrite``) or cannot be written."""


class NetworkError(InputError):
    """A catalogue or remote raster could not be read over the network, even after retries."""


class ArgumentTypeError(ImgdiffError, TypeError):
    """A library function was given a value of the wrong type (a path where a Scene is expected, ...)."""


def check_type(value: object, types: type | tuple[type, ...], name: str, hint: str = "") -> None:
    """Raise :class:`ArgumentTypeError` naming ``name`` unless ``value`` is an instance of ``types``.

    Parameters
    ----------
    value : object
        The argument given.
    types : type or tuple of type
        What it must be.
    name : str
        Function and parameter, e.g. ``"coregister: reference"``.
    hint : str, optional
        How to get the right type (``"read it with imgdiff.read_scene(path)"``).
    """
    if isinstance(value, types):
        return
    names = ["None" if t is type(None) else t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
    wanted = " or ".join(names)
    shape = getattr(value, "shape", None)
    shown = f"shape {shape}" if isinstance(shape, tuple) else repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ArgumentTypeError(f"{name} must be {wanted}, not {type(value).__name__} ({shown})"
                            + (f"; {hint}" if hint else ""))
