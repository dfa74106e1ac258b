import numpy as np

from edgeq.quant.build import int8_plan
from edgeq.quant.calibrate import observe
from edgeq.quant.data import Dataset
from edgeq.quant.quality import data_warnings, degenerate_warnings
from tests.models import small_cnn_data


def test_constant_and_duplicate_calibration_data_are_flagged():
    const = Dataset({"input": np.ones((40, 1, 12, 12), np.float32)}, source="c")
    assert "constant" in degenerate_warnings(const)[0]
    x = small_cnn_data(4)
    dup = Dataset({"input": np.repeat(x, 10, axis=0) + 1e-7}, source="d")
    assert "near-duplicates" in degenerate_warnings(dup)[0]
    assert degenerate_warnings(Dataset({"input": small_cnn_data(40)}, source="ok")) == []


def test_validation_outside_calibrated_ranges_lists_the_worst_tensors(small):
    graph, _ = small
    calib = Dataset({"input": 0.1 * small_cnn_data(40)}, source="narrow")
    val = Dataset({"input": small_cnn_data(40, seed=5)}, source="wide")
    plan = int8_plan(graph, observe(graph, calib))
    warnings = data_warnings(graph, plan, calib, val)
    assert len(warnings) == 1 and "does not cover the validation data" in warnings[0]
    assert "'input'" in warnings[0]
    covered = Dataset({"input": small_cnn_data(40, seed=5)}, source="same")
    assert data_warnings(graph, int8_plan(graph, observe(graph, covered)), covered, covered) == []
