"""Artifact: what a lowering wrote, and enough about it to run, verify and profile it.
ReadArtifact: an artifact read back from disk for `edgeq profile` (profile/read.py, the targets' `read_artifact`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from edgeq.graph import Graph
    from edgeq.quant.plan import QuantPlan


@dataclass
class IOSpec:
    name: str
    shape: list
    dtype: str  # what the artifact takes/returns: float32, int8, ...
    scale: float | None = None  # set when the artifact's I/O is quantized
    zero_point: int | None = None

    def to_json(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.scale is not None:
            d.update(scale=self.scale, zero_point=self.zero_point)
        return d


@dataclass
class Artifact:
    target: str
    path: Path  # the main file (or .mlpackage folder)
    files: list[Path] = field(default_factory=list)  # every file written, main first
    inputs: list[IOSpec] = field(default_factory=list)
    outputs: list[IOSpec] = field(default_factory=list)
    plan_sha256: str = ""
    model_sha256: str = ""
    notes: list[str] = field(default_factory=list)  # what the target had to approximate
    extra: dict = field(default_factory=dict)  # target-specific facts for the report

    def nbytes(self) -> int:
        return path_bytes(self.path)

    def sha256(self) -> str:
        return tree_sha256(self.path)

    def relocate(self, old_root: Path, new_root: Path) -> None:
        """Point at the files' final place after the staging folder is committed."""
        self.path = Path(new_root) / Path(self.path).relative_to(old_root)
        self.files = [Path(new_root) / Path(f).relative_to(old_root) for f in self.files]
        for k, v in self.extra.items():  # paths a target put in its facts (ort_file, tflm_manifest, ...)
            if isinstance(v, str | Path) and Path(v).is_relative_to(old_root):
                self.extra[k] = str(Path(new_root) / Path(v).relative_to(old_root))


def path_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def tree_sha256(path: Path) -> str:
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclass
class ReadArtifact:
    path: Path
    target: str  # "ort", "tflite", or "onnx" for a plain float model
    graph: Graph | None  # the float graph the costs are computed on (ONNX formats)
    plan: QuantPlan | None  # None: float model
    # formats without an ONNX graph give their costs directly:
    # (quant costs, float costs, quant tensor bytes, float tensor bytes, input names, output names)
    costs: tuple | None = None
    artifact: object = None  # an edgeq.artifact.Artifact the target's runner can load
    quantized_io: bool = False
    options: dict | None = None  # the target options the file shows it was written with (they decide its storage)

    @property
    def quantized(self) -> bool:
        return self.plan is not None or self.quantized_io

    def input_specs(self) -> list:
        return self.graph.inputs if self.graph is not None else self.artifact.inputs

    def runner(self, threads: int):
        from edgeq.runners import OrtRunner

        if self.artifact is not None:
            from edgeq.target import get_target

            return get_target(self.artifact.target).runner(self.artifact, threads)
        return OrtRunner(str(self.path), threads=threads, source=str(self.path))
