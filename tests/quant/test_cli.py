"""End to end through the CLI: plan round trip, INT4 lowering, modes, bad input -> exit 2."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edgeq.cli import main
from tests.models import small_cnn, small_cnn_data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    onnx.save(small_cnn(), d / "m.onnx")
    np.savez(d / "calib.npz", input=small_cnn_data(64))
    (d / "badmetric.py").write_text("def metric(outputs, labels):\n    raise ValueError('boom')\n")
    return d


def run(*args, ok=True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output
    return r


def inits(path) -> dict:
    return {t.name: numpy_helper.to_array(t).tobytes() for t in onnx.load(str(path)).graph.initializer}


def test_plan_edit_changes_exactly_that_layer(files):
    out = files / "plan"
    run("plan", files / "m.onnx", "--calib", files / "calib.npz", "--weight-bits", "6", "-o", out)
    run("compile", files / "m.onnx", "--plan", out / "plan.json", "--calib", files / "calib.npz", "-o", files / "a", "--json")
    plan = json.loads((out / "plan.json").read_text())
    assert plan["weights"]["dw.w"]["derived"]["bits"] == 6
    plan["weights"]["dw.w"]["bits"] = 3
    (files / "edited.json").write_text(json.dumps(plan))
    r = run("compile", files / "m.onnx", "--plan", files / "edited.json", "--calib", files / "calib.npz", "-o", files / "b", "--json")
    a, b = inits(files / "a" / "m.ort.onnx"), inits(files / "b" / "m.ort.onnx")
    changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert changed and all(k.startswith(("dw.w", "dw.b")) for k in changed), changed  # the layer: weight and its int32 bias
    report = json.loads(r.output)
    assert any("dw.w" in w for w in report["warnings"])
    written = json.loads((files / "b" / "plan.json").read_text())
    assert written["weights"]["dw.w"]["bits"] == 3 and written["weights"]["dw.w"]["derived"]["bits"] == 3


def test_int4_and_modes_lower_to_what_simulation_predicts(files):
    for args, want_op in ((["--weight-bits", "4", "--weight-only", "--int4"], None), (["--mode", "dynamic"], "DynamicQuantizeMatMul"),
                          (["--act-bits", "16", "--calib-method", "auto"], None),
                          (["--avg-bits", "3.5", "--rounding", "gptq", "--granularity", "per_block", "--block-size", "4"], None)):
        out = files / f"o{len(args)}{args[1]}"
        r = run("compile", files / "m.onnx", "--calib", files / "calib.npz", "-o", out, "--json", *args)
        entry = json.loads(r.output)["targets"][0]
        m = onnx.load(str(out / "m.ort.onnx"))
        ops = {n.op_type for n in m.graph.node}
        if "4" in args[:2] and "--weight-bits" in args:
            assert any(t.data_type == onnx.TensorProto.INT4 for t in m.graph.initializer)
        if want_op:
            assert want_op in ops
        assert entry["verify"]["sqnr_db"] > 10, (args, entry["verify"])


def test_bad_input_is_one_line_and_exit_2(files):
    base = ["compile", files / "m.onnx", "--calib", files / "calib.npz", "-o", files / "bad"]
    for extra, text in ((["--avg-bits", "1"], "avg-bits"), (["--size-budget", "10B"], "smaller than the smallest plan"),
                        (["--keep-float", "nosuchlayer"], "no layer matches"), (["--bits", "conv1=1"], "holds"),
                        (["--max-drop", "1%", "--metric", "badmetric:metric"], "raised ValueError")):
        import sys

        sys.path.insert(0, str(files))
        r = run(*base, *extra, ok=False)
        sys.path.remove(str(files))
        assert r.exit_code == 2, (extra, r.output)
        assert text in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (files / "bad").exists()


def test_gptq_plan_file_reproduces_the_direct_compile(files):
    flags = ["--weight-bits", "3", "--rounding", "gptq", "--calib-method", "auto"]
    run("compile", files / "m.onnx", "--calib", files / "calib.npz", "-o", files / "g1", "--json", *flags)
    run("plan", files / "m.onnx", "--calib", files / "calib.npz", "-o", files / "gp", *flags)
    plan = json.loads((files / "gp" / "plan.json").read_text())
    assert plan["tensors"] and any(w["rounding"] == "gptq" for w in plan["weights"].values())
    assert {a["observer"] for a in plan["activations"].values()} <= {"minmax", "percentile", "entropy", "mse"}
    run("compile", files / "m.onnx", "--plan", files / "gp" / "plan.json", "--calib", files / "calib.npz", "-o", files / "g2", "--json")
    assert inits(files / "g1" / "m.ort.onnx") == inits(files / "g2" / "m.ort.onnx")
