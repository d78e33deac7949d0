"""Keys of the mappings users write (claims files, watch manifests): misspelt ones refused, others reported.

A misspelt optional key (``min_lenght_m``, ``zone:`` for ``zones:``) would silently change a
result, so it is an error; a key of the writer's own (``notes``, ``expected``) is only reported.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from .errors import InputError

#: A key this similar to a known key (:func:`difflib.SequenceMatcher` ratio) is taken for a misspelling of it.
MISSPELT_RATIO = 0.75


def misspelt(key: str, known: Sequence[str], present: Iterable[str] = ()) -> str | None:
    """The known key that ``key`` misspells, or None.

    A misspelling is at least :data:`MISSPELT_RATIO` similar to a known key, or a start of one
    (``cloud`` for ``cloud_fraction``), ignoring letter case; known keys already ``present`` in
    the mapping are not candidates.
    """
    k = key.strip().lower()
    left = [c for c in known if c not in set(present)]
    if len(k) >= 3:
        for c in left:
            if c.startswith(k):
                return c
    near = difflib.get_close_matches(k, left, n=1, cutoff=MISSPELT_RATIO)
    return near[0] if near else None


def unused_keys(keys: Iterable[object], known: Sequence[str], where: str, *, prefix: str = "",
                error: type[InputError] = InputError) -> list[str]:
    """Keys that are not in ``known`` (with ``prefix``, for the caller to report as unused).

    Raises
    ------
    InputError (or ``error``)
        A key misspells a known key that the mapping lacks (:func:`misspelt`), naming ``where``.
    """
    keys = [str(k) for k in keys]
    out = []
    for k in keys:
        if k in known:
            continue
        near = misspelt(k, known, present=keys)
        if near is not None:
            raise error(f"{where}: unknown key {k!r}; did you mean {near!r}?")
        out.append(f"{prefix}{k}")
    return out
