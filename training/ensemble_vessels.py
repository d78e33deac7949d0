"""Average several vessel networks inside one ONNX graph: a network ensemble the detector runs unchanged.

The combined graph reads the networks' common input ``x`` and outputs ``maps``, the element-wise mean of the
networks' five output maps (heat logit, the two offsets, the two log sizes). :func:`imgdiff.detect.vessels.run_network`
then averages the heat logits and log sizes of that mean over its test-time passes as for one network, and takes the
offsets of the mean from the direct pass: heat logits and log sizes are averaged over every network and pass, offsets
over the networks on the direct pass. One session call per pass runs all the networks (``tta=4`` with two networks
costs about what one network costs at ``tta=8``).

Usage (onnx: ``pip install -e .[train]``)::

    # one ensemble file from two networks:
    python training/ensemble_vessels.py --models a.onnx,b.onnx --out ab.onnx
    # the fold ensembles of two fold-network sets (each <port>.onnx of one set with the same port's of the other):
    python training/ensemble_vessels.py --cv-dirs FOLDS_A/vessels,FOLDS_B/vessels --out ENS/vessels
    # then, as for one fold set (training/folds.py's steps, FOLDS = ENS):
    nice python training/train_vessel_rescore.py --extract --cv-dir ENS/vessels --cache ENS/vessel_maps --no-chips
    nice python training/train_vessel_chips.py --no-final --cv-dir ENS/vessels --cache ENS/vessel_maps \\
        --chips-dir ENS/vessel_chips
    nice python training/train_vessel_rescore.py --cv-dir ENS/vessels --cache ENS/vessel_maps \\
        --chips-dir ENS/vessel_chips --write-folds ENS/vessel_rescorers
    IMGDIFF_FOLDS_DIR=ENS python benchmarks/vessels.py --folds
"""

from __future__ import annotations

import argparse
from pathlib import Path


def average_networks(paths: list[str | Path], out: str | Path) -> Path:
    """Write one ONNX graph whose output is the mean of the outputs of the networks in ``paths``.

    The networks must share one input (name, shape) and have one output each of one shape (e.g. vessel networks of
    one architecture and band set). Every node, initializer and intermediate value of network k is renamed with the
    prefix ``n<k>/``; the input keeps its name and the output (the mean, an ONNX ``Mean`` node) the first network's.
    """
    import onnx
    from onnx import helper

    models = [onnx.load(str(p)) for p in paths]
    if not models:
        raise ValueError("average_networks: no networks")
    first = models[0].graph
    (inp,), (outp,) = first.input, first.output
    for p, m in zip(paths, models):
        g = m.graph
        if len(g.input) != 1 or len(g.output) != 1 or g.input[0] != inp:
            raise ValueError(f"{p}: not one input like {paths[0]}'s ({inp.name}) and one output")
    nodes, inits, infos, outs = [], [], [], []
    for k, m in enumerate(models):
        g, pre = m.graph, f"n{k}/"

        def rename(name: str, pre=pre) -> str:
            return name if name in ("", inp.name) else pre + name

        for n in g.node:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            c.name = pre + n.name
            c.input[:] = [rename(i) for i in n.input]
            c.output[:] = [rename(o) for o in n.output]
            nodes.append(c)
        for t in g.initializer:
            c = onnx.TensorProto()
            c.CopyFrom(t)
            c.name = rename(t.name)
            inits.append(c)
        for v in g.value_info:
            c = onnx.ValueInfoProto()
            c.CopyFrom(v)
            c.name = rename(v.name)
            infos.append(c)
        outs.append(rename(g.output[0].name))
    nodes.append(helper.make_node("Mean", outs, [outp.name], name="ensemble_mean"))
    graph = helper.make_graph(nodes, f"mean of {len(models)} networks", [inp], [outp], initializer=inits,
                              value_info=infos)
    model = helper.make_model(graph, opset_imports=list(models[0].opset_import), producer_name="imgdiff ensemble")
    model.ir_version = models[0].ir_version
    onnx.checker.check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--models", help="comma-separated ONNX networks to average into --out (a file)")
    src.add_argument("--cv-dirs", help="comma-separated fold folders (<port>.onnx each); --out is a folder")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.models:
        print(f"wrote {average_networks(args.models.split(','), args.out)}")
        return
    dirs = [Path(d) for d in args.cv_dirs.split(",")]
    ports = sorted(p.stem for p in dirs[0].glob("*.onnx"))
    for port in ports:
        average_networks([d / f"{port}.onnx" for d in dirs], args.out / f"{port}.onnx")
    print(f"wrote {len(ports)} fold ensembles ({', '.join(ports)}) to {args.out}")


if __name__ == "__main__":
    main()
