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
    plan = tflm.plan_for(g, plan, {})
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


ALIGNED_C = r"""
#include <stdint.h>
#include "small_model_data.h"
int aligned(void) { return ((uintptr_t)small_model % 16u) == 0u; }
"""


def test_c99_array_compiles_links_and_is_aligned(package, tmp_path):
    art, out, manifest = package
    assert manifest["c_array"]["c99_source"] == "small_model_data.c" and out / "small_model_data.c" in art.files
    (tmp_path / "main.c").write_text(MAIN_C.replace("int main(void) {", "int aligned(void);\nint main(void) {\n  if (!aligned()) return 2;"))
    (tmp_path / "aligned.c").write_text(ALIGNED_C)
    for f in ("small_model_data.h", "small_model_data.c"):
        shutil.copy(out / f, tmp_path / f)
    c99 = ["gcc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"]
    for src in ("small_model_data.c", "main.c", "aligned.c"):
        _run([*c99, "-c", src, "-o", src + ".o"], tmp_path)
    _run(["gcc", "main.c.o", "aligned.c.o", "small_model_data.c.o", "-o", "prog"], tmp_path)  # no C++ anywhere
    r = _run([str(tmp_path / "prog")], tmp_path)
    assert r.stdout == art.path.read_bytes()  # the C array's bytes are the .tflite, 16-byte aligned (exit 0)


def test_build_glue_names_the_files_that_exist(package, tmp_path):
    import yaml

    art, out, manifest = package
    glue = ["CMakeLists.txt", "library.json", "zephyr/CMakeLists.txt", "zephyr/module.yml"]
    assert manifest["build_glue"] == glue and all(out / g in art.files for g in glue)
    cmake = (out / "CMakeLists.txt").read_text()
    sources = re.findall(r"add_library\(small_model STATIC (\S+)\)", cmake)
    assert sources == ["small_model_data.c", "small_model_data.cc"] and all((out / s).is_file() for s in sources)
    assert "target_include_directories(small_model PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})" in cmake
    lib = json.loads((out / "library.json").read_text())
    assert lib["name"] == "small_model" and lib["build"]["srcFilter"] == ["-<*>", "+<small_model_data.cc>"]
    assert all((out / h).is_file() for h in lib["headers"])
    module = yaml.safe_load((out / "zephyr/module.yml").read_text())
    assert module == {"name": "small_model", "build": {"cmake": "zephyr"}}
    zsrc = re.findall(r"\$\{CMAKE_CURRENT_LIST_DIR\}/(\S+)\)", (out / "zephyr/CMakeLists.txt").read_text())
    assert zsrc == ["../small_model_data.c", ".."] and all((out / "zephyr" / s).exists() for s in zsrc)
    if shutil.which("cmake"):  # the library builds as a firmware project would consume it, both ways
        app = tmp_path / "app"
        shutil.copytree(out, app / "model")
        (app / "main.c").write_text(MAIN_C)
        for c_only in ("OFF", "ON"):
            lang = "C" if c_only == "ON" else "C CXX"
            (app / "CMakeLists.txt").write_text(f"cmake_minimum_required(VERSION 3.13)\nproject(app LANGUAGES {lang})\n"
                                                 "add_subdirectory(model)\nadd_executable(prog main.c)\n"
                                                 "target_link_libraries(prog PRIVATE small_model)\n")
            b = tmp_path / f"b{c_only}"
            _run(["cmake", "-S", str(app), "-B", str(b), f"-DSMALL_MODEL_C_SOURCE={c_only}"], tmp_path)
            _run(["cmake", "--build", str(b)], tmp_path)
            assert _run([str(b / "prog")], tmp_path).stdout == art.path.read_bytes()
