"""Write the .ort (ORT Mobile) flatbuffer of an ONNX model, deterministically.

onnxruntime orders some tables by hash maps whose seed is an address (abseil), so the
same model gives different bytes from run to run. Converting in a child process with
address-space randomization off (`setarch -R`) makes the bytes repeatable.
Run as: python -m edgeq.lower.ort_format IN.onnx OUT.ort
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
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
    """Convert; returns True when the bytes are reproducible (ASLR could be disabled)."""
    cmd = [sys.executable, "-m", "edgeq.lower.ort_format", str(onnx_path), str(ort_path)]
    setarch = shutil.which("setarch")
    if setarch:
        r = subprocess.run([setarch, platform.machine(), "-R", *cmd], capture_output=True)
        if r.returncode == 0:
            return True
    convert(str(onnx_path), str(ort_path))
    return False


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
