"""The TFLite Micro firmware package: the model header compiles and links from C99 and C++17 with the real
gcc / g++, the array holds the .tflite's bytes, the #defines hold the artifact's I/O quantization and an arena
at least what TFLite Micro measured, and MODEL_ops.h registers exactly the ops LiteRT reads from the model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from edgeq.graph import Graph
from edgeq.lower import get_target
from edgeq.lower.tflm_package import RESOLVER_METHODS
from edgeq.passes import run_passes
from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import load_dataset
from tests.models import small_cnn, small_cnn_data

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("g++")), reason="gcc/g++ not installed (.ci/run installs them)")

MAIN_C = r"""
#include <stdio.h>
#include "small_model_data.h"

static unsigned char tensor_arena[SMALL_ARENA_SIZE];

int main(void) {
  fwrite(small_model, 1, small_model_len, stdout);
  fprintf(stderr, "%u %u %u %.9g %d %.9g %d\n", small_model_len, (unsigned)SMALL_MODEL_LEN,
          (unsigned)sizeof(tensor_arena), (double)SMALL_INPUT_SCALE, SMALL_INPUT_ZERO_POINT,
          (double)SMALL_OUTPUT_SCALE, SMALL_OUTPUT_ZERO_POINT);
  return g_small_model_data_len == SMALL_MODEL_LEN ? 0 : 1; /* the earlier names still resolve */
}
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    tflm = get_target("tflm")
    g = run_passes(Graph(small_cnn(), "small_cnn"))
    plan = int8_plan(g, observe(g, load_dataset({"input": small_cnn_data(32)}, g)), target="tflm")
    tflm.adjust_plan(g, plan, {})
    out = tmp_path_factory.mktemp("tflm_pkg")
    art = tflm.lower(g, plan, out, "small", {})
    return art, out, json.loads((out / "small.tflm.json").read_text())


def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True)
    assert r.returncode == 0, (cmd, r.stderr.decode(errors="replace"))
    return r


@pytest.mark.parametrize("c_compiler", [["gcc", "-std=c99"], ["g++", "-std=c++17", "-x", "c++"]])
def test_header_compiles_and_links_from_c99_and_cxx17(package, tmp_path, c_compiler):
    art, out, manifest = package
    (tmp_path / "main.c").write_text(MAIN_C)
    for f in ("small_model_data.h", "small_model_data.cc"):
        shutil.copy(out / f, tmp_path / f)
    warn = ["-Wall", "-Wextra", "-pedantic", "-Werror"]
    _run([*c_compiler, *warn, "-c", "main.c", "-o", "main.o"], tmp_path)
    _run(["g++", "-std=c++17", *warn, "-c", "small_model_data.cc", "-o", "data.o"], tmp_path)
    _run(["g++", "main.o", "data.o", "-o", "prog"], tmp_path)
    r = _run([str(tmp_path / "prog")], tmp_path)
    data = art.path.read_bytes()
    assert r.stdout == data  # the array's bytes are the .tflite, reached through the C header
    n, n_define, arena, in_scale, in_zp, out_scale, out_zp = r.stderr.decode().split()
    assert int(n) == int(n_define) == len(data)
    assert int(arena) == manifest["arena_bytes"] >= manifest["arena_bytes_measured"]  # what TFLite Micro needs
    (i,), (o,) = manifest["inputs"], manifest["outputs"]
    assert np.float32(float(in_scale)) == np.float32(i["scale"]) and int(in_zp) == i["zero_point"]
    assert np.float32(float(out_scale)) == np.float32(o["scale"]) and int(out_zp) == o["zero_point"]


def test_ops_header_registers_exactly_the_models_ops(package):
    from ai_edge_litert.interpreter import Interpreter

    art, out, manifest = package
    text = (out / "small_ops.h").read_text()
    assert art.files and out / "small_ops.h" in [p for p in art.files]
    ops = sorted({d["op_name"] for d in Interpreter(model_content=art.path.read_bytes())._get_ops_details()})
    methods = re.findall(r"resolver\.(Add\w+)\(\)", text)
    assert methods == [RESOLVER_METHODS[o] for o in ops]  # one registration per op the model holds, no more
    assert f"#define SMALL_OP_COUNT {len(ops)}" in text
    assert "typedef tflite::MicroMutableOpResolver<SMALL_OP_COUNT> SMALL_OpResolver;" in text
    assert "inline TfLiteStatus small_register_ops(SMALL_OpResolver& resolver)" in text
    assert manifest["ops"] == ops and manifest["ops_header"]["function"] == "small_register_ops"
