"""Train the bundled Fashion-MNIST sample model and write its artifacts.

Usage (from the repo root):  python samples/train_fashion.py

Reads Debian's Fashion-MNIST package files (no downloads, no torchvision),
trains FashionCNN (samples/fashion_model.py) on 2 CPU threads with fixed
seeds, and writes into samples/:

  fashion_cnn.onnx     opset 17, legacy TorchScript exporter, BatchNorm kept as
                       separate nodes so edgeq's own folding passes get exercised
  fashion_cnn.pt2      torch.export ExportedProgram
  fashion_calib.npz    "input": 256 shuffled training images (calibration set)
  fashion_val.npz      "input"/"labels": first 2000 test images
  fashion_cnn.json     metadata (accuracy, preprocessing, classes, versions)
  fashion_cnn_state.safetensors   only if the safetensors package is installed

All npz images are already normalized, so the model input is the normalized image.
"""

import gzip
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OUT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(OUT_DIR.parent))  # so "samples.fashion_model" imports when run by path
from samples.fashion_model import CLASS_NAMES, MEAN, STD, FashionCNN, count_params  # noqa: E402

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
SEED = 0
EPOCHS = 7          # ~1 min/epoch on 2 cores; enough for ~91 % test accuracy
BATCH = 128
MAX_LR = 3e-3
N_CALIB = 256
N_VAL = 2000

# --- Determinism -------------------------------------------------------------
torch.manual_seed(SEED)
torch.use_deterministic_algorithms(True)
# Deterministic mode also fills every new uninitialized tensor with NaN (a debug
# aid, ~15 % of step time here); our ops never read uninitialized memory.
torch.utils.deterministic.fill_uninitialized_memory = False
# Fixed thread count: the CPU is shared, and float reductions can depend on it.
torch.set_num_threads(2)


# --- Data --------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file: 2 zero bytes, dtype code, ndim, big-endian int32 dims, data."""
    raw = gzip.open(path, "rb").read()
    assert raw[0] == 0 and raw[1] == 0 and raw[2] == 0x08, f"{path}: not unsigned-byte IDX"
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(tuple(int(d) for d in dims))


def load_split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(DATA_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(DATA_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    # Same preprocessing the deployed model expects: [0,1] scale, then normalize.
    x = ((images.astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)
    return x[:, None, :, :], labels.astype(np.int64)  # NCHW, 1 channel


train_x, train_y = load_split("train")
test_x, test_y = load_split("t10k")
print(f"train {train_x.shape}, test {test_x.shape}")

# Calibration set: first 256 training images after a seeded shuffle, so it
# covers all classes rather than whatever order the file happens to have.
calib_idx = np.random.default_rng(SEED).permutation(len(train_x))[:N_CALIB]
calib_x = np.ascontiguousarray(train_x[calib_idx])
val_x, val_y = test_x[:N_VAL], test_y[:N_VAL]


# --- Model -------------------------------------------------------------------
model = FashionCNN()
n_params = count_params(model)
print(f"FashionCNN: {n_params:,} parameters")
assert 200_000 <= n_params <= 1_000_000
# channels_last makes the oneDNN conv kernels (esp. depthwise backward) ~1.5x faster on CPU.
model = model.to(memory_format=torch.channels_last)


@torch.no_grad()
def accuracy(m: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    m.eval()
    preds = [m(torch.from_numpy(x[i:i + 1000])).argmax(1) for i in range(0, len(x), 1000)]
    return float((torch.cat(preds).numpy() == y).mean())


# --- Training ----------------------------------------------------------------
xt, yt = torch.from_numpy(train_x), torch.from_numpy(train_y)
steps_per_epoch = (len(xt) + BATCH - 1) // BATCH
opt = torch.optim.AdamW(model.parameters(), lr=MAX_LR, weight_decay=5e-4)
# One-cycle: short warmup then cosine decay to ~0; converges well in few epochs.
sched = torch.optim.lr_scheduler.OneCycleLR(
    opt, max_lr=MAX_LR, epochs=EPOCHS, steps_per_epoch=steps_per_epoch, pct_start=0.15)
gen = torch.Generator().manual_seed(SEED)  # drives shuffling and flips only

t0 = time.time()
for epoch in range(EPOCHS):
    model.train()
    perm = torch.randperm(len(xt), generator=gen)
    total_loss = 0.0
    for s in range(steps_per_epoch):
        idx = perm[s * BATCH:(s + 1) * BATCH]
        xb, yb = xt[idx], yt[idx]
        # Random horizontal flip: clothes are roughly left-right symmetric,
        # and it is a cheap regularizer for a short schedule.
        flip = torch.rand(len(xb), generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total_loss += loss.item()
    # Test accuracy is only reported, never used for model selection.
    print(f"epoch {epoch + 1}/{EPOCHS}  loss {total_loss / steps_per_epoch:.4f}  "
          f"test acc {accuracy(model, test_x, test_y):.4f}  ({time.time() - t0:.0f}s)")
train_seconds = time.time() - t0

model = model.to(memory_format=torch.contiguous_format).eval()
test_acc = accuracy(model, test_x, test_y)
val_acc = accuracy(model, val_x, val_y)
print(f"float accuracy: test(10k) {test_acc:.4f}  val(2k) {val_acc:.4f}  "
      f"train time {train_seconds:.0f}s")
assert test_acc >= 0.88, "accuracy goal missed"

with torch.no_grad():
    ref_logits = model(torch.from_numpy(val_x)).numpy()

# --- ONNX export ---------------------------------------------------------------
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

onnx_path = OUT_DIR / "fashion_cnn.onnx"
example = torch.from_numpy(val_x[:1])
torch.onnx.export(
    model, (example,), str(onnx_path),
    input_names=["input"], output_names=["logits"],
    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    opset_version=17,
    dynamo=False,               # legacy exporter: plain Conv/BatchNormalization nodes
    do_constant_folding=False,  # keep BN unfused; edgeq's passes fold it
)
onnx_model = onnx.load(str(onnx_path))
onnx.checker.check_model(onnx_model, full_check=True)
op_counts: dict[str, int] = {}
for node in onnx_model.graph.node:
    op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
print(f"ONNX ops: {dict(sorted(op_counts.items()))}")

sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
ort_logits = sess.run(["logits"], {"input": val_x})[0]
onnx_diff = float(np.abs(ort_logits - ref_logits).max())
print(f"onnxruntime vs torch on {N_VAL} images: max |diff| {onnx_diff:.2e}")
assert onnx_diff < 1e-4

# --- torch.export (.pt2) -------------------------------------------------------
pt2_path = OUT_DIR / "fashion_cnn.pt2"
try:
    # Batch-2 example: torch.export specializes size-1 dims, so batch 1 could not be dynamic.
    batch = torch.export.Dim("batch", min=1, max=4096)
    ep = torch.export.export(model, (torch.from_numpy(val_x[:2]),), dynamic_shapes=({0: batch},))
    pt2_batch = "dynamic"
except Exception as e:  # fall back to a static batch-1 program
    print(f"dynamic-batch torch.export failed ({type(e).__name__}: {e}); using static batch 1")
    ep = torch.export.export(model, (example,))
    pt2_batch = "static-1"
torch.export.save(ep, str(pt2_path))
check_x = val_x[:1] if pt2_batch == "static-1" else val_x[:64]
with torch.no_grad():
    pt2_out = torch.export.load(str(pt2_path)).module()(torch.from_numpy(check_x)).numpy()
pt2_diff = float(np.abs(pt2_out - ref_logits[:len(check_x)]).max())
print(f"pt2 ({pt2_batch} batch) reload vs torch: max |diff| {pt2_diff:.2e}")
assert pt2_diff < 1e-4

# --- Data + metadata -----------------------------------------------------------
np.savez_compressed(OUT_DIR / "fashion_calib.npz", input=calib_x)
np.savez_compressed(OUT_DIR / "fashion_val.npz", input=val_x, labels=val_y)

if importlib.util.find_spec("safetensors") is not None:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(OUT_DIR / "fashion_cnn_state.safetensors"))
    print("wrote fashion_cnn_state.safetensors")
else:
    print("safetensors not installed: skipping fashion_cnn_state.safetensors")

# No timings here, so a deterministic rerun reproduces this file exactly.
meta = {
    "model": "FashionCNN (samples/fashion_model.py)",
    "param_count": n_params,
    "float_test_accuracy_10k": round(test_acc, 4),
    "float_val_accuracy_2k": round(val_acc, 4),
    "input": {"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32"},
    "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
    "preprocessing": {"scale": 1 / 255, "mean": MEAN, "std": STD,
                      "formula": "(pixel / 255 - mean) / std"},
    "class_names": CLASS_NAMES,
    "seed": SEED,
    "epochs": EPOCHS,
    "batch_size": BATCH,
    "onnx_opset": 17,
    "pt2_batch": pt2_batch,
    "calib": {"file": "fashion_calib.npz", "count": N_CALIB,
              "source": "train, first 256 of np.random.default_rng(seed).permutation"},
    "val": {"file": "fashion_val.npz", "count": N_VAL, "source": "t10k, first 2000"},
    "torch_version": torch.__version__,
    "onnx_version": onnx.__version__,
    "onnxruntime_version": ort.__version__,
    "numpy_version": np.__version__,
}
(OUT_DIR / "fashion_cnn.json").write_text(json.dumps(meta, indent=2) + "\n")

for name in ["fashion_cnn.onnx", "fashion_cnn.pt2", "fashion_calib.npz",
             "fashion_val.npz", "fashion_cnn.json", "fashion_cnn_state.safetensors"]:
    if (OUT_DIR / name).exists():
        print(f"{name:32s} {(OUT_DIR / name).stat().st_size / 1024:8.1f} KiB")
