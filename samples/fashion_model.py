"""Small MobileNet-style CNN for Fashion-MNIST (the bundled edgeq sample model).

The module is defined here, separately from ``train_fashion.py``, so tests can
rebuild it and load the bundled weights without re-training:

    from samples.fashion_model import load_fashion_cnn
    model = load_fashion_cnn()          # eval-mode FashionCNN with trained weights

Layer names are chosen to be readable in the exported graphs (ONNX node scopes
and initializer names follow them), e.g. ``stem.conv``, ``blocks.0.dw``,
``blocks.0.pw_bn``, ``classifier``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

SAMPLES_DIR = Path(__file__).resolve().parent

# Preprocessing baked into the bundled npz files: x = (pixel / 255 - MEAN) / STD.
MEAN = 0.2860
STD = 0.3530

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# (in_channels, out_channels, depthwise stride) for each depthwise-separable block.
# The stem already runs at stride 2 (28x28 -> 14x14): on CPU, full-resolution
# layers dominate training time and cost little accuracy on 28x28 images.
BLOCK_SPECS = [
    (32, 64, 1),    # 14x14
    (64, 128, 2),   # 14x14 -> 7x7
    (128, 256, 1),  # 7x7
    (256, 256, 1),  # 7x7
    (256, 512, 2),  # 7x7 -> 4x4
]


class DepthwiseSeparable(nn.Module):
    """MobileNet-v1 block: depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        # No conv bias: the following BatchNorm has its own shift, so a bias
        # would be redundant. (The ONNX Conv nodes therefore have 2 inputs.)
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.dw_bn = nn.BatchNorm2d(cin)
        self.dw_relu = nn.ReLU()
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(cout)
        self.pw_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw_relu(self.dw_bn(self.dw(x)))
        return self.pw_relu(self.pw_bn(self.pw(x)))


class FashionCNN(nn.Module):
    """Input: float32 [N, 1, 28, 28], already normalized. Output: logits [N, 10]."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        stem_ch = BLOCK_SPECS[0][0]
        self.stem = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(1, stem_ch, 3, stride=2, padding=1, bias=False)),
            ("bn", nn.BatchNorm2d(stem_ch)),
            ("relu", nn.ReLU()),
        ]))
        self.blocks = nn.Sequential(*[DepthwiseSeparable(i, o, s) for i, o, s in BLOCK_SPECS])
        self.pool = nn.AdaptiveAvgPool2d(1)   # exported as GlobalAveragePool
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(BLOCK_SPECS[-1][1], num_classes)  # exported as Gemm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(self.flatten(self.pool(x)))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _state_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """Read weights from ONNX initializers (protobuf only, no pickle).

    Initializer names equal the PyTorch state_dict keys because the sample is
    exported with do_constant_folding=False. The legacy exporter may merge
    byte-identical tensors and re-expose them through Identity nodes, so
    those aliases are followed too.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in state:
            state[node.output[0]] = state[node.input[0]]
    return state


def load_fashion_cnn(source: str = "auto", samples_dir: str | Path = SAMPLES_DIR) -> FashionCNN:
    """Rebuild FashionCNN with the bundled trained weights, in eval mode.

    source:
      "safetensors" - fashion_cnn_state.safetensors (only written if the
                      safetensors package was installed at training time)
      "onnx"        - initializers of fashion_cnn.onnx (pure protobuf)
      "pt2"         - torch.export.load(fashion_cnn.pt2). Note torch.export.load
                      can unpickle archive entries, so only use it on trusted files.
      "auto"        - safetensors if file and package exist, else onnx.
    """
    samples_dir = Path(samples_dir)
    st_path = samples_dir / "fashion_cnn_state.safetensors"
    if source == "auto":
        try:
            import safetensors  # noqa: F401
            has_st = st_path.exists()
        except ImportError:
            has_st = False
        source = "safetensors" if has_st else "onnx"

    if source == "safetensors":
        from safetensors.torch import load_file
        state = load_file(str(st_path))
    elif source == "onnx":
        state = _state_from_onnx(samples_dir / "fashion_cnn.onnx")
    elif source == "pt2":
        ep = torch.export.load(str(samples_dir / "fashion_cnn.pt2"))
        state = ep.module().state_dict()
    else:
        raise ValueError(f"unknown source {source!r}")

    model = FashionCNN()
    expected = model.state_dict()
    # num_batches_tracked counters only matter for training; ONNX does not carry them.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise KeyError(f"{source}: weights missing for {missing}")
    model.load_state_dict({k: state.get(k, v) for k, v in expected.items()})
    return model.eval()
