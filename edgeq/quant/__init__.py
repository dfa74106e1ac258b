"""Quantization: calibration data, observers, the math, and the QuantPlan they produce."""

from edgeq.quant.plan import ActivationPlan, QuantPlan, WeightPlan

__all__ = ["QuantPlan", "WeightPlan", "ActivationPlan"]
