"""A BERT-style encoder from Hugging Face `transformers` (small config built here, random
weights: nothing downloaded), exported to ONNX with int64 token ids and a padding attention
mask as real inputs. Its float32-min mask must not collapse int8: edgeq W8A8 with
--act-bits auto keeps the embeddings' cosine >= 0.99 on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgeq.frontend import load
from edgeq.passes import DEFAULT_PIPELINE, run_passes
from edgeq.passes.sentinel import scale_masks
from edgeq.pipeline import compile as edgeq_compile
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import Dataset
from edgeq.quant.mixed import QuantOptions
from edgeq.quant.simulate import simulate
from edgeq.runners import OrtRunner
from tests.models import SAMPLES, fashion_data

SEQ = 12
INIT_STD = 0.4  # sharp attention, as in trained encoders (BERT's default 0.02 attends almost uniformly)


def export_bert(path) -> None:
    """2 layers, hidden 32, 2 heads; eager attention (MatMul/Softmax in the graph). Output 'embeddings'."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32, attn_implementation="eager",
                                  initializer_range=INIT_STD)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg, add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids, mask = token_batch(2, seed=5)
    torch.onnx.export(Encoder(), (torch.from_numpy(ids), torch.from_numpy(mask)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["embeddings"],
                      dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "embeddings": {0: "batch"}},
                      opset_version=17, dynamo=False)


def token_batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (0 = padding) and the padding mask of n sentences of 3..SEQ tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, SEQ + 1, n)
    lengths[0] = 3  # always some padding
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    return (rng.integers(1, 100, (n, SEQ)) * mask).astype(np.int64), mask


def token_cosine(ref: np.ndarray, got: np.ndarray, mask: np.ndarray) -> float:
    """Mean cosine of the embeddings of real (unpadded) tokens."""
    r, g = ref[mask > 0].astype(np.float64), got[mask > 0].astype(np.float64)
    return float(np.mean(np.sum(r * g, 1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1) + 1e-30)))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    export_bert(path)
    return path


def test_export_has_int64_tokens_and_a_real_padding_mask(bert):
    m = onnx.load(str(bert))
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [onnx.TensorProto.INT64] * 2
    ops = {n.op_type for n in m.graph.node}
    assert {"Gather", "Softmax", "LayerNormalization", "Erf", "Where", "MatMul"} <= ops


def test_float_min_mask_is_rewritten_and_int8_would_collapse_without_it(bert):
    ids, mask = token_batch(64, seed=1)
    data = Dataset({"input_ids": ids, "attention_mask": mask})
    g = run_passes(load(str(bert)))
    (rec,) = g.records["sentinel_rewrites"]
    assert rec["original"] == float(np.finfo(np.float32).min) and len(rec["softmax_inputs"]) == 2
    ref = OrtRunner(g.serialize(), optimize=False).run_batches(data, 32)["embeddings"]
    raw = run_passes(load(str(bert)), tuple(p for p in DEFAULT_PIPELINE if p != "sentinel_masks"))
    broken = simulate(raw, int8_plan(raw, observe(raw, data)), data)["embeddings"]
    assert not np.isfinite(broken).all() or token_cosine(ref, broken, mask) < 0.9  # the collapse this fixes
    g, _ = scale_masks(g, data)
    fixed = simulate(g, int8_plan(g, observe(g, data)), data)["embeddings"]
    assert token_cosine(ref, fixed, mask) >= 0.99  # plain int8 holds once the mask is finite and scaled


def test_w8a8_act_bits_auto_keeps_embedding_cosine(bert, tmp_path):
    ids, mask = token_batch(160, seed=2)
    vids, vmask = token_batch(64, seed=3)
    report = edgeq_compile(str(bert), "ort", calib={"input_ids": ids, "attention_mask": mask},
                           val={"input_ids": vids, "attention_mask": vmask}, out=tmp_path / "out", latency_runs=3,
                           quant=QuantOptions(act_bits="auto"))
    entry = report["targets"][0]
    assert report["act_precision"]["mode"] == "auto"
    assert any(w.startswith("sentinel mask: constant") for w in report["warnings"])
    ref = OrtRunner(str(bert)).run({"input_ids": vids, "attention_mask": vmask})["embeddings"]
    got = OrtRunner(entry["artifact"]).run({"input_ids": vids, "attention_mask": vmask})["embeddings"]
    assert token_cosine(ref, got, vmask) >= 0.99
    assert entry["verify"]["cosine"] >= 0.99
    m = onnx.load(entry["artifact"])
    assert sum(n.op_type == "QuantizeLinear" for n in m.graph.node) > 20  # really W8A8, not weight-only


def test_vit_sample_w8a8_act_bits_auto_keeps_accuracy(tmp_path):
    """samples/fashion_vit.onnx (samples/train_vit.py): W8A8 --act-bits auto on ORT keeps >= 99 % of float top-1."""

    calib, val = fashion_data(128, 500)
    report = edgeq_compile(str(SAMPLES / "fashion_vit.onnx"), "ort", calib=calib, val=val, out=tmp_path / "out",
                           latency_runs=3, quant=QuantOptions(act_bits="auto"))
    v = report["targets"][0]["verify"]
    assert v["accuracy_quant"] >= 0.99 * v["accuracy_float"], v
    assert report["act_precision"]["kept_wide"] <= report["act_precision"]["max_wide"]
