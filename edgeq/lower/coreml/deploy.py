"""The deployment a Core ML package is written for: the lowest OS that holds the plan (min_os)
and the compute precision. The writer and the storage rule both decide by it."""

from __future__ import annotations

from edgeq.errors import PlanError
from edgeq.quant.plan import QuantPlan
from edgeq.schemes import of as scheme_of
from edgeq.target import target_spec

# The choices of the options targets/coreml.toml declares (MIN_OS oldest first: "lowest" below relies on it).
MIN_OS = next(o.choices for o in target_spec("coreml").options if o.key == "min_os")
PRECISIONS = next(o.choices for o in target_spec("coreml").options if o.key == "coreml_precision")


def plan_needs(plan: QuantPlan) -> list[tuple[str, str, bool]]:
    """(min_os, why, hard) for each thing in the plan that needs more than iOS 16. A soft need is
    one a lower min-os still holds exactly, only stored bigger (4-bit linear on the int8 grid)."""
    needs = []
    for wp in plan.weights.values():
        if wp.bits is None:
            continue
        if scheme_of(wp).palette:
            if len(wp.palette or []) > 1:
                needs.append(("ios18", f"weight '{wp.tensor}' has per-channel-group palettes", True))
            if wp.bits == 3:
                needs.append(("ios18", f"weight '{wp.tensor}' has a 3-bit palette", True))
        elif wp.per_block:
            needs.append(("ios18", f"weight '{wp.tensor}' is quantized per block", True))
        elif wp.bits <= 4:
            needs.append(("ios18", f"weight '{wp.tensor}' is {wp.bits}-bit linear (int4 storage)", False))
    if plan.mode == "static" and any(a.bits == 8 for a in plan.activations.values()):
        needs.append(("ios17", "the plan quantizes activations to int8 (W8A8)", True))
    return needs


def resolve_options(plan: QuantPlan, options: dict | None) -> tuple[str, str]:
    """(min_os, compute precision): the asked ones, checked against the plan, or the defaults."""
    options = options or {}
    precision = options.get("coreml_precision") or "fp16"
    if precision not in PRECISIONS:
        raise PlanError(f"--coreml-precision {precision}: choose one of {', '.join(PRECISIONS)}")
    needs = plan_needs(plan)
    lowest = max((n[0] for n in needs), key=MIN_OS.index, default="ios16")
    min_os = options.get("min_os") or lowest
    if min_os not in MIN_OS:
        raise PlanError(f"--min-os {min_os}: choose one of {', '.join(MIN_OS)}")
    for need, why, hard in needs:
        if hard and MIN_OS.index(min_os) < MIN_OS.index(need):
            raise PlanError(f"--min-os {min_os} cannot hold this plan: {why}; use --min-os {need} (or change the plan)")
    return min_os, precision
