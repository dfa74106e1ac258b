"""Activation precision side by side: float, onnxruntime's own int8, edgeq int8, edgeq --act-bits auto.

For the bundled CNN, the bundled ViT and a BERT-style encoder (transformers, small config,
random weights with sharp attention, int64 tokens + padding mask), in one run on this host:

  float        the model as given
  ort-int8     onnxruntime.quantization.quantize_static: QDQ, per-channel, MinMax, S8S8,
               reduce_range (7-bit weights: this x86 host has no VNNI), on the model file as given
  edgeq-int8   edgeq compile --target ort (uniform W8A8; the sentinel pass runs on every compile)
  edgeq-auto   edgeq compile --target ort --act-bits auto (W8A8, int16/float where measured)

metric: top-1 accuracy on fashion_val.npz (CNN, ViT) or the mean cosine of the real tokens'
embeddings (encoder). rel = metric / float metric. bytes: the .onnx file. p50: ms per batch-1
inference, 1 thread, measured here one after another. wide: activations edgeq kept > 8 bits.

    python bench/act_precision.py [--models cnn,vit,bert] [--val 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeq.pipeline import compile as edgeq_compile  # noqa: E402
from edgeq.quant.mixed import QuantOptions  # noqa: E402
from edgeq.runners import OrtRunner  # noqa: E402


def fashion(name: str, n_val: int):
    path = ROOT / "samples" / f"fashion_{name}.onnx"
    if not path.is_file():
        return None
    with np.load(ROOT / "samples" / "fashion_calib.npz") as z:
        calib = {"input": z["input"]}
    with np.load(ROOT / "samples" / "fashion_val.npz") as z:
        val, labels = {"input": z["input"][:n_val]}, z["labels"][:n_val]

    def metric(out: np.ndarray, feeds: dict) -> float:
        return float(np.mean(out.argmax(1) == labels))

    return f"fashion-{name}", path, calib, val, labels, metric, "top-1"


def bert(tmp: Path, n_val: int):
    from tests.test_transformers import export_bert, token_batch, token_cosine

    path = tmp / "bert_encoder.onnx"
    export_bert(path)
    ids, mask = token_batch(256, seed=2)
    vids, vmask = token_batch(min(n_val, 256), seed=3)
    ref = OrtRunner(str(path)).run({"input_ids": vids, "attention_mask": vmask})["embeddings"]

    def metric(out: np.ndarray, feeds: dict) -> float:
        return token_cosine(ref, out, feeds["attention_mask"])

    return "bert-encoder", path, {"input_ids": ids, "attention_mask": mask}, {"input_ids": vids, "attention_mask": vmask}, None, \
        metric, "cosine"


def run_all(path, feeds: dict, batch: int = 64) -> np.ndarray:
    r = OrtRunner(str(path), threads=1)
    n = len(next(iter(feeds.values())))
    outs = [next(iter(r.run({k: v[i:i + batch] for k, v in feeds.items()}).values())) for i in range(0, n, batch)]
    return np.concatenate(outs)


def p50_ms(path, feeds: dict, runs: int = 50) -> float:
    r = OrtRunner(str(path), threads=1)
    one = {k: v[:1] for k, v in feeds.items()}
    for _ in range(5):
        r.run(one)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r.run(one)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def ort_int8(src: Path, dst: Path, calib: dict) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            n = len(next(iter(calib.values())))
            self.it = iter([{k: v[i:i + 1] for k, v in calib.items()} for i in range(n)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return dst


def bench(model, tmp: Path) -> list[dict]:
    name, path, calib, val, labels, metric, metric_name = model
    rows = []

    def row(variant, artifact, wide="", note=""):
        out = run_all(artifact, val)
        rows.append({"model": name, "variant": variant, "metric_name": metric_name, "metric": metric(out, val),
                     "bytes": Path(artifact).stat().st_size, "p50": p50_ms(artifact, val), "wide": wide, "note": note})

    row("float", path)
    try:
        row("ort-int8", ort_int8(path, tmp / f"{name}.ort_int8.onnx", calib))
    except Exception as e:  # a quantizer failure is a result too
        rows.append({"model": name, "variant": "ort-int8", "metric_name": metric_name, "metric": float("nan"), "bytes": 0,
                     "p50": float("nan"), "wide": "", "note": f"failed: {str(e).splitlines()[0][:60]}"})
    for variant, quant in (("edgeq-int8", None), ("edgeq-auto", QuantOptions(act_bits="auto"))):
        t = time.perf_counter()
        report = edgeq_compile(str(path), "ort", calib=calib, val=dict(val, **({"labels": labels} if labels is not None else {})),
                               out=tmp / f"{name}-{variant}", latency_runs=5, quant=quant, ort_format=False)
        ap = report.get("act_precision") or {}
        wide = f"{ap.get('kept_wide', 0)}/{ap.get('groups', '-')}" if quant is not None else "0"
        notes = [f"{len(ap.get('sentinel_rewrites', []))} mask rewrite(s)" if ap.get("sentinel_rewrites") else "",
                 f"{len(ap.get('smoothquant', []))} smoothed LN" if ap.get("smoothquant") else "",
                 f"plan {time.perf_counter() - t:.0f}s"]
        row(variant, report["targets"][0]["artifact"], wide, ", ".join(n for n in notes if n))
        if quant is not None:
            for w in ap.get("wide", []):
                print(f"  {name}: kept {w['bits'] or 'float'}-bit '{w['tensor']}' (int8 alone: {w['sqnr_db_int8_alone']} dB SQNR, "
                      f"sensitivity {w['sensitivity']:.3g})", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,vit,bert")
    ap.add_argument("--val", type=int, default=2000, help="validation samples (fashion) / sentences (encoder, at most 256)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for m in args.models.split(","):
            model = bert(tmp, args.val) if m == "bert" else fashion(m, args.val)
            if model is None:
                print(f"skipping {m}: samples/fashion_{m}.onnx is missing (python samples/train_{m}.py writes it)")
                continue
            rows += bench(model, tmp)
    print(f"\n{'model':<14} {'variant':<11} {'metric':>14} {'rel':>7} {'bytes':>9} {'p50 ms':>7} {'wide':>6}  note")
    base = {}
    for r in rows:
        if r["variant"] == "float":
            base[r["model"]] = r["metric"]
        rel = r["metric"] / base[r["model"]] if base.get(r["model"]) else float("nan")
        print(f"{r['model']:<14} {r['variant']:<11} {r['metric_name']:>7} {r['metric']:.4f} {rel:>7.3f} {r['bytes']:>9} "
              f"{r['p50']:>7.3f} {r['wide']:>6}  {r['note']}")


if __name__ == "__main__":
    main()
