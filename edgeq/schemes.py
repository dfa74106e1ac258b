"""Weight quantization schemes: one entry each, read by the planner, the size rule and every lowering.

A scheme says how a weight's codes map back to floats, by three facts the rest of edgeq reads
instead of comparing names:

    palette      codes index a table of 2^bits floats (k-means or NF4); no scale, no zero point
    narrow       linear codes on the narrow signed grid [-(2^(b-1)-1), 2^(b-1)-1] (zero point 0),
                 which integer kernels that assume symmetric weights need (LiteRT, XNNPACK)
    zero_points  a zero point per scale group is stored beside the scales (asymmetric)

Adding a scheme that is one of these shapes is one `register` line here; a target holds it when its
toml lists it in `weight_schemes` (Core ML lists none, so it holds every registered scheme).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.errors import PlanError


@dataclass(frozen=True)
class Scheme:
    name: str
    palette: bool
    narrow: bool
    zero_points: bool
    help: str

    @property
    def linear(self) -> bool:
        return not self.palette


SCHEMES: dict[str, Scheme] = {}


def register(scheme: Scheme) -> Scheme:
    SCHEMES[scheme.name] = scheme
    return scheme


register(Scheme("symmetric", palette=False, narrow=True, zero_points=False,
                help="scale per group, zero point 0, narrow signed grid (every integer kernel takes it)"))
register(Scheme("asymmetric", palette=False, narrow=False, zero_points=True,
                help="scale and zero point per group, full signed grid (skewed weights lose less)"))
register(Scheme("palette", palette=True, narrow=False, zero_points=False,
                help="2^bits-entry lookup table per tensor or channel group (k-means or NF4); Core ML only"))

NAMES = tuple(SCHEMES)


def scheme(name: str) -> Scheme:
    """The registered scheme of this name; an unknown name is a one-line PlanError."""
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise PlanError(f"scheme {name!r} is not one of {', '.join(SCHEMES)}") from None


def of(wp) -> Scheme:
    """The scheme of a WeightPlan (or anything with a `.scheme` name)."""
    return scheme(wp.scheme)
