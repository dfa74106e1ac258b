"""Train the bundled ViT-style Fashion-MNIST sample and export it to ONNX.

Usage (from the repo root):  python samples/train_vit.py

A small vision transformer (7x7 patches -> 16 tokens + a class token, 2 blocks of
multi-head self-attention with LayerNorm and GELU) trained with fixed seeds on 2 CPU
threads from Debian's Fashion-MNIST files. Inputs are the same normalized images as the
CNN sample, so samples/fashion_calib.npz and fashion_val.npz serve both. Writes:

  fashion_vit.onnx    opset 17, legacy TorchScript exporter (MatMul/Softmax attention,
                      LayerNormalization, Erf GELU), input "input" [batch,1,28,28] -> "logits"
  fashion_vit.json    metadata (accuracy, architecture, versions)
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OUT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(OUT_DIR.parent))

SEED = 0
EPOCHS = 4       # 4-10 min per epoch on 2 shared, busy cores (85 % val after 2, ~87 % after 4)
BATCH = 128
MAX_LR = 3e-3
PATCH, DIM, DEPTH, HEADS, MLP = 7, 64, 2, 4, 128
N_VAL = 2000

torch.manual_seed(SEED)
torch.use_deterministic_algorithms(True)
torch.utils.deterministic.fill_uninitialized_memory = False
torch.set_num_threads(2)


class Attention(nn.Module):
    """Plain MatMul/Softmax attention, so the export has the ops edgeq lowers everywhere."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
        out = att.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.ln1, self.att = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.att(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class FashionViT(nn.Module):
    def __init__(self):
        super().__init__()
        n = (28 // PATCH) ** 2
        self.embed = nn.Conv2d(1, DIM, PATCH, stride=PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos = nn.Parameter(torch.randn(1, n + 1, DIM) * 0.02)
        self.blocks = nn.Sequential(*[Block(DIM, HEADS, MLP) for _ in range(DEPTH)])
        self.norm, self.head = nn.LayerNorm(DIM), nn.Linear(DIM, 10)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def read_idx(path: Path) -> np.ndarray:
    """IDX file: 2 zero bytes, dtype code, ndim, big-endian int32 dims, data (same as train_fashion.py)."""
    import gzip

    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def load_split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    from samples.fashion_model import MEAN, STD

    data = Path("/usr/share/datasets/fashion-mnist")
    images = read_idx(data / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(data / f"{prefix}-labels-idx1-ubyte.gz")
    x = ((images.astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)
    return x[:, None, :, :], labels.astype(np.int64)


@torch.no_grad()
def accuracy(m: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    m.eval()
    preds = [m(torch.from_numpy(x[i:i + 1000])).argmax(1) for i in range(0, len(x), 1000)]
    return float((torch.cat(preds).numpy() == y).mean())


def main() -> None:
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("t10k")
    val_x, val_y = test_x[:N_VAL], test_y[:N_VAL]
    model = FashionViT()
    xt, yt = torch.from_numpy(train_x), torch.from_numpy(train_y)
    steps = (len(xt) + BATCH - 1) // BATCH
    opt = torch.optim.AdamW(model.parameters(), lr=MAX_LR, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MAX_LR, epochs=EPOCHS, steps_per_epoch=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(steps):
            idx = perm[s * BATCH:(s + 1) * BATCH]
            xb, yb = xt[idx], yt[idx]
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{EPOCHS}  loss {total / steps:.4f}  val acc {accuracy(model, val_x, val_y):.4f}  "
              f"({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    test_acc, val_acc = accuracy(model, test_x, test_y), accuracy(model, val_x, val_y)
    print(f"float accuracy: test(10k) {test_acc:.4f}  val(2k) {val_acc:.4f}  train {time.time() - t0:.0f}s")

    import onnx
    import onnxruntime as ort

    path = OUT_DIR / "fashion_vit.onnx"
    torch.onnx.export(model, (torch.from_numpy(val_x[:1]),), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    with torch.no_grad():
        ref = model(torch.from_numpy(val_x)).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": val_x})[0]
    diff = float(np.abs(got - ref).max())
    print(f"ONNX ops {dict(sorted(ops.items()))}; onnxruntime vs torch max |diff| {diff:.2e}")
    assert diff < 1e-3
    meta = {"model": "FashionViT (samples/train_vit.py)", "param_count": sum(p.numel() for p in model.parameters()),
            "float_test_accuracy_10k": round(test_acc, 4), "float_val_accuracy_2k": round(val_acc, 4),
            "architecture": {"patch": PATCH, "dim": DIM, "depth": DEPTH, "heads": HEADS, "mlp": MLP, "tokens": 17},
            "input": {"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32"},
            "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
            "calib": "fashion_calib.npz", "val": "fashion_val.npz", "preprocessing": "same as fashion_cnn.json",
            "seed": SEED, "epochs": EPOCHS, "batch_size": BATCH, "onnx_opset": 17, "op_counts": dict(sorted(ops.items())),
            "torch_version": torch.__version__, "onnx_version": onnx.__version__}
    (OUT_DIR / "fashion_vit.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
