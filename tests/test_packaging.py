"""The wheel ships every package under edgeq/ (an explicit list in pyproject.toml can miss one)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_edgeq_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgeq").rglob("__init__.py")}
    assert on_disk <= listed, sorted(on_disk - listed)
    assert {"edgeq.targets", "edgeq.targets.devices"} <= listed  # targets/ ships as edgeq.targets (data)
