"""Build every detector that never saw a given port or airport, in one folder: the honest benchmarks' inputs.

The honest figures (nested leave-one-port-out vessel F1, ``benchmarks/claims.py --honest``,
``benchmarks/claims_outside_r3.py --honest``) need detectors trained without the scene they are scored on.
They are rebuilt from the training scripts with their shipped recipes and seeds, into one folder whose layout
:func:`fold_paths` names (the benchmarks' and training scripts' defaults follow it)::

    FOLDS/vessels/<port>.onnx, <port>.json     train_vessels.py --cv --no-final --cv-iters 3000 (one per port)
    FOLDS/vessel_maps/<port>.npz               their out-of-fold network maps (train_vessel_rescore.py --extract)
    FOLDS/vessel_chips/<port>.onnx             the chip classifiers, each trained without its port (train_vessel_chips.py)
    FOLDS/vessel_rescorers/<port>.json         the nested rescorers, each trained without its port (--write-folds)
    FOLDS/aircraft/fold<k>.onnx, folds.json    train_aircraft.py's grouped folds by airport, and the chip -> fold table
    FOLDS/logs/*.log                           each step's output (the figures are printed there)

``FOLDS`` is ``$IMGDIFF_FOLDS_DIR``, default ``/tmp/imgdiff-folds``. Usage (torch: ``pip install -e .[train]``)::

    nice python training/folds.py                      # all of it; about 25 min on 2 cores (2026-11-28)
    nice python training/folds.py --only vessels       # vessels (networks, then rescorers) or aircraft
    export IMGDIFF_FOLDS_DIR=/tmp/imgdiff-folds
    python benchmarks/claims_outside_r3.py --honest    # and claims.py --honest, train_vessel_rescore.py

Steps whose outputs exist are skipped (delete a file to rebuild it); ``--jobs`` fold trainings run at once,
each on one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Leave-one-port-out iterations of the shipped vessel recipe (train_vessels.py's --cv-iters).
VESSEL_CV_ITERS = 3000
#: Grouped folds of the shipped aircraft recipe (train_aircraft.py's --folds).
AIRCRAFT_FOLDS = 4


@dataclass(frozen=True)
class FoldPaths:
    """Where the fold detectors live (see the module docstring): ``root`` and its sub-folders."""

    root: Path
    vessels: Path
    vessel_maps: Path
    vessel_chips: Path
    vessel_rescorers: Path
    aircraft: Path
    logs: Path


def fold_paths(root: str | Path | None = None) -> FoldPaths:
    """The fold folder: ``root``, else ``$IMGDIFF_FOLDS_DIR``, else ``/tmp/imgdiff-folds``."""
    r = Path(root or os.environ.get("IMGDIFF_FOLDS_DIR") or "/tmp/imgdiff-folds")
    return FoldPaths(r, *(r / name for name in ("vessels", "vessel_maps", "vessel_chips", "vessel_rescorers",
                                                 "aircraft", "logs")))


def vessel_detector_files(paths: FoldPaths, port: str) -> dict[str, Path]:
    """``detect_vessels`` keyword arguments for the detector that never saw ``port``: its fold network
    (``model``), nested rescorer (``rescorer``) and fold chip classifier (``chip_model``)."""
    return {"model": paths.vessels / f"{port}.onnx", "rescorer": paths.vessel_rescorers / f"{port}.json",
            "chip_model": paths.vessel_chips / f"{port}.onnx"}


def aircraft_detector_files(paths: FoldPaths, chip: str) -> dict[str, Path]:
    """``detect_aircraft`` keyword arguments for the grouped fold network that never saw the airport of
    ``chip`` (an ``aircraft_s2sim`` chip name, or a prefix that names one chip in ``folds.json``)."""
    folds = json.loads((paths.aircraft / "folds.json").read_text())
    names = [chip] if chip in folds else [k for k in folds if k.startswith(chip)]
    if len(names) != 1:
        raise SystemExit(f"{paths.aircraft / 'folds.json'}: {len(names)} chips match {chip!r}")
    return {"model_path": paths.aircraft / f"fold{folds[names[0]]}.onnx"}


@contextlib.contextmanager
def detectors_with(vessels: dict | None = None, aircraft: dict | None = None):
    """For a block, ``imgdiff.detect.vessels.detect_vessels`` and ``imgdiff.detect.aircraft.detect_aircraft``
    called with these keyword arguments (:func:`vessel_detector_files`, :func:`aircraft_detector_files`) wherever
    imgdiff calls them (``imgdiff.verify`` does through their modules): the honest claims benchmarks."""
    import imgdiff.detect.aircraft as da
    import imgdiff.detect.vessels as dv

    saved = (dv.detect_vessels, da.detect_aircraft)
    try:
        if vessels:
            dv.detect_vessels = functools.partial(saved[0], **vessels)
        if aircraft:
            da.detect_aircraft = functools.partial(saved[1], **aircraft)
        yield
    finally:
        dv.detect_vessels, da.detect_aircraft = saved


def _run_parallel(commands: list[tuple[list[str], Path]], jobs: int) -> None:
    """Run ``(argv, log)`` commands, ``jobs`` at a time; stop at the first failure."""
    pending, running = list(commands), []
    while pending or running:
        while pending and len(running) < jobs:
            argv, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"  {' '.join(argv[1:])}  > {log}", flush=True)
            running.append((subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT), log))
        time.sleep(2)
        for proc, log in list(running):
            if proc.poll() is None:
                continue
            running.remove((proc, log))
            if proc.returncode:
                for p, _ in running:
                    p.terminate()
                raise SystemExit(f"{log}: exited with status {proc.returncode}; see the log")


def _tail(log: Path, lines: int) -> None:
    for line in log.read_text().splitlines()[-lines:]:
        print(f"    {line}")


def build_vessels(paths: FoldPaths, ports: list[str], jobs: int) -> None:
    """Fold networks of the ports that have none yet, then the out-of-fold maps, chip classifiers and
    nested rescorers."""
    py = sys.executable
    todo = [p for p in ports if not (paths.vessels / f"{p}.onnx").is_file()]
    print(f"vessel fold networks: {len(ports) - len(todo)} of {len(ports)} present", flush=True)
    groups = [todo[i::jobs] for i in range(jobs) if todo[i::jobs]]
    _run_parallel([([py, str(HERE / "train_vessels.py"), "--cv", "--no-final", "--cv-iters", str(VESSEL_CV_ITERS),
                     "--cv-dir", str(paths.vessels), "--folds", ",".join(g)],
                    paths.logs / f"vessels_{'_'.join(g)}.log") for g in groups], jobs)
    if todo:  # new fold networks: new out-of-fold maps, so new chip classifiers and rescorers
        for p in ports:
            for stale in (paths.vessel_maps / f"{p}.npz", paths.vessel_chips / f"{p}.onnx",
                          paths.vessel_rescorers / f"{p}.json"):
                stale.unlink(missing_ok=True)
    chips = [p for p in ports if not (paths.vessel_chips / f"{p}.onnx").is_file()]
    print(f"vessel fold chip classifiers: {len(ports) - len(chips)} of {len(ports)} present", flush=True)
    if chips:  # the first job makes the missing out-of-fold maps before the others start
        groups = [chips[i::jobs] for i in range(jobs) if chips[i::jobs]]
        commands = [([py, str(HERE / "train_vessel_chips.py"), "--cv-dir", str(paths.vessels), "--cache",
                      str(paths.vessel_maps), "--chips-dir", str(paths.vessel_chips), "--ports", ",".join(g)],
                     paths.logs / f"vessel_chips_{'_'.join(g)}.log") for g in groups]
        _run_parallel(commands[:1], 1)
        _run_parallel(commands[1:], jobs)
    if chips or not all((paths.vessel_rescorers / f"{p}.json").is_file() for p in ports):
        log = paths.logs / "vessel_rescorers.log"
        _run_parallel([([py, str(HERE / "train_vessel_rescore.py"), "--cv-dir", str(paths.vessels),
                         "--cache", str(paths.vessel_maps), "--chips-dir", str(paths.vessel_chips),
                         "--write-folds", str(paths.vessel_rescorers)], log)], 1)
        _tail(log, 12)


def build_aircraft(paths: FoldPaths, jobs: int) -> None:
    """Grouped fold networks that are missing, the out-of-fold table, and the chip -> fold table."""
    py, script = sys.executable, str(HERE / "train_aircraft.py")
    todo = [k for k in range(AIRCRAFT_FOLDS) if not (paths.aircraft / f"fold{k}.onnx").is_file()]
    print(f"aircraft fold networks: {AIRCRAFT_FOLDS - len(todo)} of {AIRCRAFT_FOLDS} present", flush=True)
    _run_parallel([([py, script, "--folds", str(AIRCRAFT_FOLDS), "--only-fold", str(k), "--work", str(paths.aircraft)],
                    paths.logs / f"aircraft_fold{k}.log") for k in todo], jobs)
    log = paths.logs / "aircraft_cv.log"
    _run_parallel([([py, script, "--folds", str(AIRCRAFT_FOLDS), "--reuse", "--no-final", "--work", str(paths.aircraft)],
                    log),
                   ([py, script, "--folds", str(AIRCRAFT_FOLDS), "--write-folds", str(paths.aircraft / "folds.json")],
                    paths.logs / "aircraft_folds_json.log")], 1)
    print("  aircraft, grouped folds by airport:")
    for line in log.read_text().splitlines():
        if line.startswith(("chosen threshold", "recall by length")):
            print(f"    {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="fold folder (default $IMGDIFF_FOLDS_DIR or /tmp/imgdiff-folds)")
    ap.add_argument("--only", choices=("vessels", "aircraft"), default=None)
    ap.add_argument("--jobs", type=int, default=2, help="fold trainings at once (one thread each)")
    args = ap.parse_args()
    paths = fold_paths(args.out)
    sys.path.insert(0, str(HERE.parent))
    from imgdiff.data import data_dir
    from imgdiff.evaluate.vessels import scene_dirs

    t0 = time.time()
    if args.only in (None, "vessels"):
        build_vessels(paths, [d.name for d in scene_dirs(data_dir() / "sen2ships")], max(1, args.jobs))
    if args.only in (None, "aircraft"):
        build_aircraft(paths, max(1, args.jobs))
    print(f"done in {time.time() - t0:.0f} s; export IMGDIFF_FOLDS_DIR={paths.root}")


if __name__ == "__main__":
    main()
