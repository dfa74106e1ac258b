"""edgeq.target: the target files are checked whole, options are declared by targets and checked
alike from the CLI and the API, and the pipeline reaches a lowering only through Target."""

import tomllib
from importlib import resources
from pathlib import Path

import pytest

import edgeq
from edgeq.errors import EdgeqError, PlanError
from edgeq.target import TARGET_MODULES, all_options, parse_spec, target_spec


def _toml(name: str) -> dict:
    return tomllib.loads(resources.files("edgeq.targets").joinpath(f"{name}.toml").read_text())


@pytest.mark.parametrize("name", list(TARGET_MODULES))
def test_every_target_file_loads(name):
    spec = target_spec(name)
    assert spec.name == name and spec.weight_bits and spec.options


def test_an_unknown_key_in_a_target_file_is_an_error():
    data = {**_toml("ort"), "weight_bitz": [8]}
    with pytest.raises(EdgeqError, match="targets/ort.toml: unknown key 'weight_bitz'"):
        parse_spec("ort", data, "targets/ort.toml")


def test_a_key_of_the_wrong_type_is_an_error():
    data = {**_toml("tflm"), "mcu_arena_bytes": "4 MiB"}
    with pytest.raises(EdgeqError, match="'mcu_arena_bytes' must be a int"):
        parse_spec("tflm", data, "targets/tflm.toml")


def test_an_unknown_param_bytes_key_is_an_error():
    data = _toml("tflite")
    data = {**data, "param_bytes": {**data["param_bytes"], "weight_scales": 4}}
    with pytest.raises(EdgeqError, match="param_bytes.weight_scales"):
        parse_spec("tflite", data, "targets/tflite.toml")


def test_options_shared_by_two_targets_are_declared_once_with_both_names():
    shared = {opt.key: names for opt, names in all_options()}
    assert shared["io_dtype"] == ["tflite", "tflm"]
    assert shared["min_os"] == ["coreml"] and shared["ort_int4"] == ["ort"]


def test_the_cli_flags_come_from_the_target_files():
    from click.testing import CliRunner

    from edgeq.cli import main

    out = CliRunner().invoke(main, ["compile", "--help"]).output
    for opt, _ in all_options():
        assert opt.flag.split("/")[0] in out
    assert "coreml: compute precision" in out


def test_an_api_option_value_is_checked_like_the_flag(tmp_path):
    with pytest.raises(PlanError, match=r"coreml option min_os='ios99' \(--min-os\): give one of ios16, ios17, ios18"):
        edgeq.compile(str(Path(__file__).parents[1] / "samples" / "fashion_cnn.onnx"), target="coreml", calib="random", out=tmp_path / "o",
                      target_options={"min_os": "ios99"})
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", list(TARGET_MODULES))
def test_every_key_of_a_target_file_has_a_reader(name):
    """A key no code reads is a promise nothing keeps: each one's name appears in edgeq's code
    outside target.py (the spec fields are read through TargetSpec / target_data)."""
    from edgeq.target import EXTRA_KEYS

    code = "\n".join(p.read_text() for p in (Path(__file__).parents[1] / "edgeq").rglob("*.py") if p.name != "target.py")
    for key in EXTRA_KEYS.get(name, {}):
        if key in _toml(name):
            read_here = f'extra.get("{key}"' in (Path(__file__).parents[1] / "edgeq" / "target.py").read_text()
            assert f'"{key}"' in code or f"'{key}'" in code or read_here, f"targets/{name}.toml: nothing reads '{key}'"
    for key in ("weight_granularity", "weight_schemes", "modes", "activation_dtype", "one_integer_width", "auto_wide_bits"):
        assert f"spec.{key}" in (Path(__file__).parents[1] / "edgeq" / "target.py").read_text() or f'"{key}"' in code


def test_edgeq_targets_lists_what_each_target_holds():
    from click.testing import CliRunner

    from edgeq.cli import main

    out = CliRunner().invoke(main, ["targets", "--json"]).output
    import json

    info = {t["name"]: t for t in json.loads(out)}
    assert info["tflite"]["weight_schemes"] == ["symmetric"] and "--io-dtype" in info["tflite"]["options"].values()
    if "coreml" in info:
        assert set(info["coreml"]["deployments"]) == {"ios16", "ios17", "ios18"}
