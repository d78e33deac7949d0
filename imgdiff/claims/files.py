"""Claim files: what a claims file says, parsed and checked.

A claim file (YAML; paths are relative to the file)::

    before: scenes/tartus/2024-12-03      # anything imgdiff.read_scene reads
    after: scenes/tartus/2024-12-13
    zones: sites/tartus.geojson           # or `site: tartus`
    bands: [B02, B03, B04, B08]           # optional: bands to read; names a multi-band file's bands in order
    max_shift: 5                          # optional: largest plausible shift between the scenes (pixels of the
                                          # before scene's grid, 0.5-50; default 5)
    claims:
      - id: warships-gone
        text: Warships no longer stationed at the naval piers
        object: vessels                   # vessels | aircraft
        zone: naval_piers
        assert: absent_after              # present_before | present_after | absent_before
                                          # | absent_after | decreased | increased | unchanged
        min_length_m: 60                  # optional: only objects at least this long count

Misspelt keys are refused and unknown ones reported (:func:`imgdiff.keys.unused_keys`); object
and zone names are matched up to letter case, spaces, hyphens and underscores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..coregister import MAX_SHIFT_PX, parse_max_shift
from ..errors import InputError, check_type
from ..io.bands import parse_bands
from ..io.layout import one_line
from ..io.yamltext import load_yaml
from ..keys import unused_keys
from ..sites import load_zones, site_names
from ..zones import Zones

ASSERTIONS = ("present_before", "present_after", "absent_before", "absent_after", "decreased", "increased",
              "unchanged")
OBJECTS = ("vessels", "aircraft")


class ClaimsError(InputError):
    """A claims file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Claim:
    """One claim about objects in one zone.

    Attributes
    ----------
    id, text : str
    object : str
        ``"vessels"`` or ``"aircraft"``.
    zone : str
        Zone name.
    assertion : str
        One of :data:`ASSERTIONS`.
    min_length_m : float or None
        Only objects at least this long (metres) count.
    """

    id: str
    text: str
    object: str
    zone: str
    assertion: str
    min_length_m: float | None = None

    def dates(self) -> tuple[str, ...]:
        """The dates (``"before"``, ``"after"``) the claim depends on."""
        if self.assertion.endswith("_before"):
            return ("before",)
        if self.assertion.endswith("_after"):
            return ("after",)
        return ("before", "after")

    def rests_on_absence(self, count: int | None = None) -> bool:
        """True when the verdict rests on *not* seeing objects.

        Count comparisons always do (a hidden object changes a count); ``present_*`` and
        ``absent_*`` do when ``count`` (objects seen on the claim's date) is 0, or, without
        a count, for ``absent_*``.
        """
        if self.assertion in ("decreased", "increased", "unchanged"):
            return True
        if count is None:
            return self.assertion.startswith("absent")
        return count == 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "object": self.object, "zone": self.zone,
                "assert": self.assertion, "min_length_m": self.min_length_m}


@dataclass(frozen=True)
class ClaimFile:
    """A parsed claims file.

    Attributes
    ----------
    path : Path
    before, after : Path
        Scene paths, resolved against the file's folder.
    zones_source : str
        ``"site:<name>"`` or the zones file path.
    zones : Zones
    claims : tuple of Claim
    unused_keys : tuple of str
        Keys of the file that imgdiff does not read (``"claims[2].expected"``), to tell the user.
    bands : tuple of str, optional
        The file's ``bands``: the bands to read from both scenes, or the names of a multi-band
        file's bands in order when the file does not name them (as ``read_scene(bands=...)``).
    max_shift : float
        The file's ``max_shift``: the largest plausible shift of the after scene, in pixels of the
        before scene's grid along either axis (``max_shift`` of :func:`imgdiff.compare`; default
        :data:`~imgdiff.coregister.MAX_SHIFT_PX`, 5 px).
    """

    path: Path
    before: Path
    after: Path
    zones_source: str
    zones: Zones
    claims: tuple[Claim, ...]
    unused_keys: tuple[str, ...] = ()
    bands: tuple[str, ...] | None = None
    max_shift: float = MAX_SHIFT_PX


#: Keys of a claims file and of one claim (anything else is reported as unused, or refused when it
#: looks like a misspelling of one of these that is missing: :func:`imgdiff.keys.unused_keys`).
FILE_KEYS = ("before", "after", "zones", "site", "claims", "bands", "max_shift")
CLAIM_KEYS = ("id", "text", "object", "zone", "assert", "min_length_m")


def parse_claims(obj: Any, *, where: str = "claims", base: str | Path = ".") -> ClaimFile:
    """A :class:`ClaimFile` from the parsed YAML/JSON mapping.

    Raises
    ------
    ClaimsError
        Naming ``where`` and the offending key when the content is malformed.
    """
    base = Path(base)
    if not isinstance(obj, Mapping):
        raise ClaimsError(f"{where}: expected a mapping with before, after, zones or site, and claims")
    for key in ("before", "after", "claims"):
        if key not in obj:
            raise ClaimsError(f"{where}: missing key {key!r}")
    if ("zones" in obj) == ("site" in obj):
        raise ClaimsError(f"{where}: give exactly one of 'zones' (a GeoJSON file) or 'site' (a catalogue name)")
    for key in ("before", "after", "zones", "site"):  # YAML reads a folder named 2024-12-03 as a date: fine
        if key in obj and (obj[key] is None or isinstance(obj[key], (bool, Mapping, list)) or not str(obj[key]).strip()):
            raise ClaimsError(f"{where}: {key} {obj[key]!r} is not a {'site name' if key == 'site' else 'path'}")
    spec = obj.get("zones", obj.get("site"))
    if "site" in obj and str(spec).strip().lower() not in site_names():
        raise ClaimsError(f"{where}: site {spec!r} is not a known site ({', '.join(site_names())}); "
                          "for your own zones write zones: <GeoJSON file>")
    try:
        zones = load_zones(str(spec), base=base)
    except ClaimsError:
        raise
    except InputError as e:  # a missing or malformed zones file is a problem of the claims file's zones entry
        raise ClaimsError(f"{where}: zones: {e}") from None
    if "zones" in obj:
        zones = _zones_named_as_claimed(zones, Path(base) / Path(str(spec)).expanduser(), obj.get("claims"))
    zsrc = f"site:{spec}" if "site" in obj else str(spec)
    unused = unused_keys(obj, FILE_KEYS, where, error=ClaimsError)
    items = obj["claims"]
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise ClaimsError(f"{where}: 'claims' must be a non-empty list")
    claims: list[Claim] = []
    seen: set[str] = set()
    for i, c in enumerate(items):
        at = f"{where}: claim {i + 1}"
        if not isinstance(c, Mapping):
            raise ClaimsError(f"{at}: expected a mapping")
        cid = str(c.get("id") or f"claim-{i + 1}")
        at = f"{where}: claim {cid!r}"
        unused += unused_keys(c, CLAIM_KEYS, at, prefix=f"claims[{cid}].", error=ClaimsError)
        if cid in seen:
            raise ClaimsError(f"{at}: duplicate id")
        seen.add(cid)
        obj_kind = OBJECT_NAMES.get(_spelling(str(c.get("object", ""))), "")
        if obj_kind not in OBJECTS:
            raise ClaimsError(f"{at}: object must be one of {', '.join(OBJECTS)}, not {c.get('object')!r}")
        assertion = next((a for a in ASSERTIONS if _spelling(a) == _spelling(str(c.get("assert", "")))), "")
        if not assertion:
            raise ClaimsError(f"{at}: assert must be one of {', '.join(ASSERTIONS)}, not {c.get('assert')!r}")
        zone = _zone_named(c.get("zone"), zones.names)
        if zone is None:
            raise ClaimsError(f"{at}: zone {c.get('zone')!r} is not in the zones ({', '.join(zones.names)})")
        ml = c.get("min_length_m")
        if ml is not None:
            try:
                if isinstance(ml, bool):  # YAML's true / yes would be 1 m
                    raise TypeError
                ml = float(ml)
            except (TypeError, ValueError):
                raise ClaimsError(f"{at}: min_length_m must be a number of metres, not {ml!r}") from None
            if not 0 <= ml < math.inf:
                raise ClaimsError(f"{at}: min_length_m must be a finite number of metres >= 0, not {ml!r}")
        claims.append(Claim(cid, str(c.get("text", "")), obj_kind, str(zone), assertion, ml))
    try:
        bands = parse_bands(obj.get("bands"), where)
    except InputError as e:
        raise ClaimsError(str(e)) from None
    max_shift = parse_max_shift(obj.get("max_shift", MAX_SHIFT_PX), where, ClaimsError)
    return ClaimFile(Path(where), _scene_ref(base, obj["before"]), _scene_ref(base, obj["after"]), zsrc, zones,
                     tuple(claims), tuple(unused), bands, max_shift)


#: Words for the objects a claim may name (compared by :func:`_spelling`) -> the detector's object.
OBJECT_NAMES = {
    **{_w: "vessels" for _w in ("vessels", "vessel", "ship", "ships", "boat", "boats", "warship", "warships",
                                "navalvessels", "navalvessel")},
    **{_w: "aircraft" for _w in ("aircraft", "aircrafts", "plane", "planes", "airplane", "airplanes", "aeroplane",
                                 "aeroplanes", "jet", "jets", "militaryaircraft")},
}


def _zones_named_as_claimed(zones: Zones, path: Path, items: Any) -> Zones:
    """The zones of ``path`` named by the property that holds the claims' zone names.

    Zones are named by their ``zone``, ``name``, ``id``, ``label`` or ``title`` property; a file
    may name them under another key (``zone_name``), or use ``zone`` for a category beside
    ``name``. When some zone a claim names is not among the zones, and one property key holds
    every zone the claims name (up to :func:`_spelling`), the zones are read again by that key.
    """
    from ..zones import property_values, read_zones

    wanted = [str(c["zone"]) for c in items if isinstance(c, Mapping) and c.get("zone") is not None] \
        if isinstance(items, Sequence) and not isinstance(items, str) else []
    if not wanted or all(_zone_named(w, zones.names) is not None for w in wanted):
        return zones
    for key, values in sorted(property_values(path).items()):
        spelt = {_spelling(v) for v in values}
        if all(_spelling(w) in spelt for w in wanted):
            return read_zones(path, name_key=key)
    return zones


def _spelling(text: str) -> str:
    """``text`` without letter case, spaces, hyphens and underscores (``Absent-after`` ~ ``absent_after``)."""
    return "".join(text.lower().replace("-", " ").replace("_", " ").split())


def _zone_named(name: object, names: Sequence[str]) -> str | None:
    """The zone a claim names: its exact name, else the one name of the same :func:`_spelling`
    (``Naval piers`` is ``naval_piers``); None if none or several."""
    if name is None:
        return None
    if str(name) in names:
        return str(name)
    hits = [n for n in names if _spelling(n) == _spelling(str(name))]
    return hits[0] if len(hits) == 1 else None


def _scene_ref(base: Path, raw: object) -> Path | str:
    """A scene path relative to the claims file, or a STAC item URL/id kept as given."""
    from ..stac.resolve import is_stac_ref

    return str(raw) if is_stac_ref(str(raw)) else base / Path(str(raw)).expanduser()  # ~ as a shell reads it


def load_claims(path: str | Path) -> ClaimFile:
    """Read a YAML (or JSON) claims file; scene and zones paths are relative to it.

    Parameters
    ----------
    path : str or Path
        The claims file (a dict already read: :func:`parse_claims`).

    Returns
    -------
    ClaimFile
        For :func:`imgdiff.verify`.

    Raises
    ------
    ClaimsError
        The file is missing, unreadable or not valid YAML, or a key or value is wrong (one line
        naming the file and the claim).
    """
    check_type(path, (str, os.PathLike), "load_claims: path", "for a dict use imgdiff.claims.parse_claims(obj)")
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClaimsError(f"{path}: no such claims file") from None
    except OSError as e:
        raise ClaimsError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ClaimsError(f"{path}: not a text file in UTF-8 ({e.reason} at byte {e.start}); save it as UTF-8 "
                          "YAML") from None
    try:
        obj = load_yaml(text)
    except yaml.YAMLError as e:
        raise ClaimsError(f"{path}: not valid YAML ({one_line(e)})") from None
    cf = parse_claims(obj, where=str(path), base=path.parent)
    return replace(cf, path=path)
