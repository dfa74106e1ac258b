"""Calibration and validation data: loaders, and checks against the graph's inputs.

A dataset is {input_name: array with a leading sample axis}, plus optional `labels`.
Files are read with allow_pickle=False: user data never runs code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.errors import CalibrationError
from edgeq.graph import Graph, TensorSpec

# Same-kind casts we do silently (a float64 npz for a float32 model is the common case).
_CASTABLE = {
    "float32": ("float64", "float16"),
    "float16": ("float32", "float64"),
    "int64": ("int32", "int16", "int8", "uint8"),
    "int32": ("int64", "int16", "int8", "uint8"),
}


@dataclass
class Dataset:
    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = ""
    random: bool = False
    notes: list[str] = field(default_factory=list)
    unit: int = 1  # rows per inference: a model's fixed leading dim (e.g. a bound time axis) > 1

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, idx) -> Dataset:
        if isinstance(idx, slice) and self.unit > 1:  # whole inferences only: round out to the unit
            start, stop, _ = idx.indices(len(self))
            idx = slice(start - start % self.unit, min(len(self), -(-stop // self.unit) * self.unit))
        labels = self.labels[idx] if self.labels is not None else None
        return Dataset({k: v[idx] for k, v in self.arrays.items()}, labels, self.source, self.random, list(self.notes), self.unit)

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.arrays.items()}

    def split(self, holdout: float = 0.2) -> tuple[Dataset, Dataset]:
        """Calibrate on the first part, verify on the held-back last part."""
        n = len(self)
        k = max(1, int(round(n * holdout)))
        k = -(-k // self.unit) * self.unit
        if n - k < 1:
            raise CalibrationError(f"{self.source}: {n} sample(s) cannot be split into calibration and validation; pass --val or more data")
        return self.take(slice(0, n - k)), self.take(slice(n - k, n))


def load_dataset(spec, graph: Graph, what: str = "--calib", seed: int = 0, random_samples: int = 32) -> Dataset:
    """Load `.npz`, a folder of `.npy`, a dict of arrays, or 'random'; check against the graph."""
    inputs = graph.inputs
    if isinstance(spec, Dataset):
        ds = spec
    elif isinstance(spec, dict):
        arrays = {k: np.asarray(v) for k, v in spec.items() if k != "labels"}
        ds = Dataset(_name_arrays(arrays, inputs, "<dict>", what), _labels(spec.get("labels")), "<dict>")
    elif isinstance(spec, str) and spec == "random":
        ds = random_dataset(inputs, random_samples, seed)
    else:
        ds = _load_path(Path(spec), inputs, what)
    check_dataset(ds, inputs, what)
    ds.unit = rows_per_inference(inputs)
    if len(ds) % ds.unit:
        raise CalibrationError(f"{what} {ds.source}: {len(ds)} rows; the model takes {ds.unit} rows per inference "
                               f"(its inputs' leading dim), so pass a multiple of {ds.unit}")
    check_labels(ds, graph, what)
    return ds


def rows_per_inference(inputs: list[TensorSpec]) -> int:
    """A fixed leading dim above 1 (all inputs alike) is one inference's rows; else one row each."""
    dims = {s.shape[0] for s in inputs if s.shape}
    return int(dims.pop()) if len(dims) == 1 and all(isinstance(d, int) and d > 1 for d in dims) else 1


def class_count(graph: Graph) -> int | None:
    """Classes of the first output that looks like scores ([N, C] or [N, C, 1, 1], C > 1), else None."""
    for spec in graph.outputs:
        dims = list(spec.shape[1:])
        if dims and all(isinstance(d, int) for d in dims) and all(d == 1 for d in dims[1:]) and dims[0] > 1:
            return dims[0]
    return None


def check_labels(ds: Dataset, graph: Graph, what: str) -> None:
    """Labels are class indices: integers (or integral floats) in 0..C-1 for the model's score output."""
    if ds.labels is None:
        return
    labels = ds.labels
    where = f"{what} {ds.source}: 'labels'"
    if labels.dtype.kind not in "biuf":
        raise CalibrationError(f"{where} is a {labels.dtype} array; labels are integer class indices")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise CalibrationError(f"{where} holds NaN/inf; labels are integer class indices")
        if not np.all(labels == np.round(labels)):
            raise CalibrationError(f"{where} holds non-integer values (e.g. {labels[labels != np.round(labels)][0]}); "
                                   "labels are integer class indices")
    n = class_count(graph)
    lo, hi = (labels.min(), labels.max()) if labels.size else (0, 0)
    if lo < 0 or (n is not None and hi >= n):
        span = f"0..{n - 1} (the output has {n} classes)" if n is not None else "0 or more"
        raise CalibrationError(f"{where} holds {lo if lo < 0 else hi}; labels are class indices {span}")
    ds.labels = labels.astype(np.int64)


def random_dataset(inputs: list[TensorSpec], n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    n *= rows_per_inference(inputs)
    arrays = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) else 1 for d in spec.shape[1:]]
        if spec.dtype.startswith("float"):
            arrays[spec.name] = rng.standard_normal((n, *shape)).astype(spec.dtype)
        else:
            arrays[spec.name] = rng.integers(0, 2, (n, *shape)).astype(spec.dtype)
    note = "calibration used RANDOM data (--calib random): activation ranges and every accuracy number are meaningless for real inputs"
    return Dataset(arrays, None, "random", True, [note])


def _labels(v):
    return None if v is None else np.asarray(v).reshape(-1)


def _load_path(path: Path, inputs: list[TensorSpec], what: str) -> Dataset:
    if not path.exists():
        raise CalibrationError(f"{what} {path}: no such file or folder; pass an .npz, a folder of .npy files, or 'random'")
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise CalibrationError(f"{what} {path}: the folder holds no .npy files")
        loaded = {f.stem: _np_load(f, what) for f in files}
        labels = loaded.pop("labels", None)
        names = {i.name for i in inputs}
        if set(loaded) <= names:
            return Dataset(_name_arrays(loaded, inputs, str(path), what), _labels(labels), str(path))
        if len(inputs) != 1:
            raise CalibrationError(f"{what} {path}: name the files after the model's inputs {sorted(names)} (e.g. {inputs[0].name}.npy)")
        rank = len(inputs[0].shape)
        samples = [a if a.ndim == rank else a[None] for a in loaded.values()]
        try:
            stacked = np.concatenate(samples)
        except ValueError:
            raise CalibrationError(f"{what} {path}: the .npy files have different shapes; each should hold one sample or a batch of {inputs[0].name}") from None
        return Dataset({inputs[0].name: stacked}, _labels(labels), str(path))
    if path.suffix != ".npz":
        raise CalibrationError(f"{what} {path}: expected an .npz file or a folder of .npy files")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                try:
                    arrays[k] = z[k]
                except ValueError:  # an object array: reading it would unpickle
                    arrays[k] = None
                _check_member(arrays[k], k, path, what)
    except CalibrationError:
        raise
    except Exception as e:
        raise CalibrationError(f"{what} {path}: not a readable .npz ({type(e).__name__}); save it with np.savez") from None
    labels = arrays.pop("labels", None)
    return Dataset(_name_arrays(arrays, inputs, str(path), what), _labels(labels), str(path))


def _check_member(value, name: str, path: Path, what: str) -> None:
    """Every member of user data is a plain numeric (or bool) array: no objects, strings, raw bytes."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return
    kind = (f"a {value.dtype} array" if isinstance(value, np.ndarray)
            else "an object array" if value is None else f"not an array ({type(value).__name__})")
    raise CalibrationError(f"{what} {path}: member '{name}' is {kind}; keep only numeric arrays (np.savez(file, input=..., labels=...))")


def _np_load(f: Path, what: str) -> np.ndarray:
    try:
        value = np.load(f, allow_pickle=False)
    except Exception as e:
        raise CalibrationError(f"{what} {f}: not a readable .npy ({type(e).__name__}); save it with np.save") from None
    _check_member(value, f.stem, f, what)
    return value


def _name_arrays(arrays: dict, inputs: list[TensorSpec], source: str, what: str) -> dict:
    names = [i.name for i in inputs]
    if not arrays:
        raise CalibrationError(f"{what} {source}: holds no arrays; it needs one per model input {names}")
    if set(names) <= set(arrays):
        return {n: arrays[n] for n in names}
    if len(inputs) == 1 and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    missing = sorted(set(names) - set(arrays))
    raise CalibrationError(f"{what} {source}: no array for input(s) {missing}; its keys are {sorted(arrays)}")


def check_dataset(ds: Dataset, inputs: list[TensorSpec], what: str) -> None:
    n = None
    for spec in inputs:
        a = ds.arrays[spec.name]
        if a.ndim == len(spec.shape) - 1:  # a single sample without the batch axis
            a = ds.arrays[spec.name] = a[None]
        if a.ndim != len(spec.shape):
            raise CalibrationError(
                f"{what} {ds.source}: input '{spec.name}' expects shape {_fmt(spec.shape)}, the data has {list(a.shape)}"
            )
        for k, (want, got) in enumerate(zip(spec.shape, a.shape)):
            if k > 0 and isinstance(want, int) and want != got:
                raise CalibrationError(
                    f"{what} {ds.source}: input '{spec.name}' expects shape {_fmt(spec.shape)}, the data has {list(a.shape)}"
                )
        given = a
        if str(a.dtype) != spec.dtype:
            if str(a.dtype) in _CASTABLE.get(spec.dtype, ()):
                with np.errstate(over="ignore"):  # a value beyond the model's type becomes inf: refused below
                    ds.arrays[spec.name] = a = a.astype(spec.dtype)
            else:
                raise CalibrationError(f"{what} {ds.source}: input '{spec.name}' expects {spec.dtype}, the data is {a.dtype}; convert it")
        if len(a) == 0:
            raise CalibrationError(f"{what} {ds.source}: input '{spec.name}' has 0 samples; {what} needs at least 1 "
                                   "(calibration: ideally >= 32)")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if given is not a and np.all(np.isfinite(given)):
                raise CalibrationError(f"{what} {ds.source}: input '{spec.name}' holds {bad} values beyond {spec.dtype}'s range "
                                       f"(±{float(np.finfo(spec.dtype).max):.3g}); the model takes {spec.dtype}: rescale the data")
            raise CalibrationError(f"{what} {ds.source}: input '{spec.name}' holds {bad} NaN/inf values; clean the data")
        if n is not None and len(a) != n:
            raise CalibrationError(f"{what} {ds.source}: inputs have different sample counts ({n} vs {len(a)} for '{spec.name}')")
        n = len(a)
    if ds.labels is not None and len(ds.labels) != n:
        raise CalibrationError(f"{what} {ds.source}: 'labels' has {len(ds.labels)} entries for {n} samples")


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "N" if k == 0 else str(d) for k, d in enumerate(shape)) + "]"
