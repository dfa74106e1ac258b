"""Core ML artifacts: bytes against the payload the plan predicts, and top-1 kept in the MIL executor.

    python bench/coreml_size.py [--model fashion|orientation|orientation-photos|small] [--recipes float,int8,...]

Each recipe compiles the model with `edgeq.pipeline.compile(target="coreml")` side by side, on
the same validation data, and prints one row: the package's bytes, the bytes of its weight.bin,
the plan's predicted payload (codes in Core ML's containers + fp16 params, edgeq/quant/size.py), the ratio
weight.bin / payload (goal <= 1.05; the package adds the program protobuf, a few KiB), min-os,
and top-1 agreement with float (accuracy too when labels exist) in the reference executor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeq.pipeline import compile as edgeq_compile  # noqa: E402
from edgeq.quant.mixed import QuantOptions  # noqa: E402

RECIPES = {
    "float": None,  # a plan with no bits: fp16 weights
    "int8": QuantOptions(mode="weight_only"),
    "w8a8": QuantOptions(),
    "pal4": QuantOptions(mode="weight_only", scheme="palette", bits=4, granularity="per_tensor"),
    "avg4-pal": QuantOptions(mode="weight_only", scheme="palette", avg_bits=4, granularity="per_tensor"),
    "avg4-pal-ch": QuantOptions(mode="weight_only", scheme="palette", avg_bits=4, granularity="per_channel"),
    "avg4-pal-gptq": QuantOptions(mode="weight_only", scheme="palette", avg_bits=4, granularity="per_tensor", rounding="gptq"),
    "avg4": QuantOptions(mode="weight_only", avg_bits=4),  # the engine's defaults: linear per channel
    "avg4-gptq": QuantOptions(mode="weight_only", avg_bits=4, rounding="gptq"),
    "mixed-2468": None,  # palettes of 2/4/6/8 bits round-robin over the layers (built per model)
}


def model_and_data(name: str):
    if name == "fashion":
        return ROOT / "samples/fashion_cnn.onnx", str(ROOT / "samples/fashion_calib.npz"), str(ROOT / "samples/fashion_val.npz")
    if name.startswith("orientation"):  # rendered text pages (the model's domain), or photos (outside it)
        from samples.orientation_data import document_inputs, model_path, orientation_inputs

        d = Path(tempfile.mkdtemp())
        np.savez(d / "calib.npz", x=document_inputs(24, seed=1)[0])
        if name == "orientation":
            x, labels = document_inputs(60)
            np.savez(d / "val.npz", x=x, labels=labels)
        else:
            np.savez(d / "val.npz", x=orientation_inputs())
        return model_path(), str(d / "calib.npz"), str(d / "val.npz")
    import onnx

    from tests.models import small_cnn, small_cnn_data

    d = Path(tempfile.mkdtemp())
    onnx.save(small_cnn(), d / "small.onnx")
    np.savez(d / "calib.npz", input=small_cnn_data(64))
    return d / "small.onnx", str(d / "calib.npz"), None


def spread_overrides(model) -> list[str]:
    """2/4/6/8 bits round-robin over the weighted layers (by node name)."""
    from edgeq.frontend import load
    from edgeq.passes import run_passes
    from edgeq.quant.build import weighted_nodes

    graph = run_passes(load(model))
    names = [n.input[1] for _, n in weighted_nodes(graph)]
    return [f"{name}={[2, 4, 6, 8][k % 4]}" for k, name in enumerate(names)]


def predicted_payload(model, plan) -> int:
    """The payload the plan predicts for an fp16 Core ML program (edgeq/quant/size.py with
    targets/coreml.toml [param_bytes]): codes in the containers Core ML stores them in, fp16
    scales, palettes and every float parameter."""
    from edgeq.frontend import load
    from edgeq.passes import run_passes
    from edgeq.quant.size import predicted_bytes

    return predicted_bytes(run_passes(load(model)), plan, "coreml")["total"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion", choices=["fashion", "orientation", "orientation-photos", "small"])
    ap.add_argument("--recipes", default=",".join(RECIPES))
    args = ap.parse_args(argv)
    from edgeq.quant.plan import QuantPlan

    model, calib, val = model_and_data(args.model)
    print(f"Core ML artifacts of {Path(model).name} (MIL reference executor)\n")
    print(f"{'recipe':<12}{'min-os':>7}{'avg bits':>9}{'package':>10}{'weights':>10}{'payload':>10}{'ratio':>7}"
          f"{'top-1 agr':>10}{'acc':>8}")
    for name in args.recipes.split(","):
        q = RECIPES[name]
        if name == "mixed-2468":
            q = QuantOptions(mode="weight_only", scheme="palette", granularity="per_tensor", bits_overrides=spread_overrides(model))
        with tempfile.TemporaryDirectory() as out:
            kw = {"quant": q} if q is not None else {"plan": _float_plan(model, out)}
            report = edgeq_compile(model, target="coreml", calib=calib, val=val, out=out, latency_runs=1, **kw)
            plan = QuantPlan.load(Path(out) / "plan.json")
            blob = next(Path(out).glob("*.mlpackage/Data/com.apple.CoreML/weights/weight.bin")).stat().st_size
        t = report["targets"][0]
        payload = predicted_payload(model, plan)
        acc = t["verify"].get("accuracy_quant")
        print(f"{name:<12}{t['min_os']:>7}{t['avg_weight_bits']:>9.2f}{t['bytes']:>10}{blob:>10}{payload:>10}{blob / payload:>7.3f}"
              f"{100 * (t['verify']['top1_agreement'] or 0):>9.1f}%{'' if acc is None else f'{100 * acc:.1f}%':>8}")
    return 0


def _float_plan(model, out: str) -> str:
    from edgeq.frontend import load
    from edgeq.passes import run_passes
    from edgeq.quant.plan import QuantPlan

    graph = run_passes(load(model))
    path = Path(out) / "float_plan.json"
    path.write_text(QuantPlan(model_sha256=graph.sha256(), mode="weight_only").to_json())
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
