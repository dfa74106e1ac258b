"""External data entries are checked before anything opens them: one ModelError line for compile and inspect."""

import onnx
import pytest
from click.testing import CliRunner

from edgeq.cli import main
from tests.cli.test_errors import compile_fails
from tests.models import small_cnn


def _with_entry(tmp_path, key, value):
    (tmp_path / "m").mkdir()
    onnx.save(small_cnn(), tmp_path / "m" / "x.onnx", save_as_external_data=True, location="x.data", size_threshold=0)
    raw = onnx.load(tmp_path / "m" / "x.onnx", load_external_data=False)
    t = next(t for t in raw.graph.initializer if t.external_data)
    entries = {e.key: e for e in t.external_data}
    if key in entries:
        entries[key].value = value
    else:
        t.external_data.add(key=key, value=value)
    onnx.save(raw, tmp_path / "m" / "x.onnx")
    return tmp_path / "m" / "x.onnx"


@pytest.mark.parametrize("key,value,match", [
    ("location", "x\0.data", "is not a file name"),
    ("location", "a" * 300 + ".data", "longer than a file name can be"),
    ("offset", "-8", "offset '-8' is not a non-negative integer"),
    ("length", "lots", "length 'lots' is not a non-negative integer"),
    ("length", "999999999", "runs past the end of 'x.data'"),
])
def test_bad_external_data_entry(tmp_path, small_calib, key, value, match):
    model = _with_entry(tmp_path, key, value)
    compile_fails(tmp_path, [model, "--calib", small_calib], match)
    r = CliRunner().invoke(main, ["inspect", str(model)])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and match in r.output, r.output
