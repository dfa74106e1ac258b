"""Lowerings: one module per target, each with a table from ONNX op to a lowering.

A target module provides:
    NAME, DESCRIPTION
    OPS: dict[str, callable]            the op table (listable: `edgeq inspect --target X`)
    lower(graph, plan, out_dir, stem, options) -> Artifact
    check_plan(graph, plan, options)    optional: raise PlanError if the target cannot hold it
    adjust_plan(graph, plan, options)   optional: fix ranges the target's kernels require
Modules are imported on first use, so a target's heavy dependency is only needed when used.
"""

from __future__ import annotations

import importlib
import tomllib
from functools import cache
from importlib import resources

from edgeq.errors import EdgeqError

TARGET_MODULES = {
    "ort": "edgeq.lower.ort",
    "tflite": "edgeq.lower.tflite",
    "tflm": "edgeq.lower.tflm",
    "coreml": "edgeq.lower.coreml",
}


def target_names() -> list[str]:
    return [name for name in TARGET_MODULES if available(name)]


def available(name: str) -> bool:
    spec = importlib.util.find_spec(TARGET_MODULES[name])
    return spec is not None


def get_target(name: str):
    if name not in TARGET_MODULES or not available(name):
        raise EdgeqError(f"unknown target '{name}'; choose one of {', '.join(target_names())} (`edgeq targets` lists them)")
    try:
        return importlib.import_module(TARGET_MODULES[name])
    except ImportError as e:
        raise EdgeqError(f"target '{name}' needs the package '{e.name}'; install it with pip install {e.name}") from None


@cache
def target_data(name: str) -> dict:
    """targets/<name>.toml: what the target holds (bit widths, runtime, sources)."""
    path = resources.files("edgeq.targets").joinpath(f"{name}.toml")
    if not path.is_file():
        return {}
    return tomllib.loads(path.read_text())
