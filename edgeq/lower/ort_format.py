"""Write the .ort (ORT Mobile) flatbuffer of an ONNX model, deterministically.

onnxruntime orders some tables by hash maps whose seed is an address (abseil), so the
same model gives different bytes from run to run. Converting in a child process with
address-space randomization off (`setarch -R`) makes the bytes repeatable.
Run as: python -m edgeq.lower.ort_format IN.onnx OUT.ort
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def convert(src: str, dst: str) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    # Extended, not "all": the .ort must stay portable (no host-specific NCHWc layouts).
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = dst
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def write_ort_format(onnx_path: Path, ort_path: Path) -> bool:
    """Convert; returns True when the bytes are reproducible (ASLR could be disabled).

    The child runs in a scratch folder on fixed file names, so its argv, and with it the
    memory layout that seeds the hash maps, is the same on every run.
    """
    setarch = shutil.which("setarch")
    if setarch:
        with tempfile.TemporaryDirectory() as scratch:
            shutil.copyfile(onnx_path, Path(scratch) / "model.onnx")
            cmd = [setarch, platform.machine(), "-R", sys.executable, "-m", "edgeq.lower.ort_format", "model.onnx", "model.ort"]
            env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
            r = subprocess.run(cmd, cwd=scratch, capture_output=True, env=env)
            if r.returncode == 0:
                shutil.copyfile(Path(scratch) / "model.ort", ort_path)
                return True
    convert(str(onnx_path), str(ort_path))
    return False


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
