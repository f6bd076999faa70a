"""Depth, width and resolution scaling rules (Tan & Le 2019, "EfficientNet", Sec. 3.3, Eq. 3).

Compound scaling ties the three dimensions to one coefficient phi:
depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi, under the constraint
alpha * beta^2 * gamma^2 ~= 2, so FLOPs (linear in depth, quadratic in width and resolution) grow by
about 2^phi. The paper's grid search at phi = 1 gave alpha = 1.2, beta = 1.1, gamma = 1.15.

Every residual and scaled family takes `depth_multiplier` and `width_multiplier` and rounds them
with `round_repeats` / `round_filters` below; resolution goes through the data config. So a sweep
scales a ResNet and an EfficientNet the same way, and `flops_report` checks what it got.
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# Tan & Le 2019, Sec. 3.3 (grid search with phi = 1 around EfficientNet-B0).
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15


@dataclasses.dataclass(frozen=True)
class Multipliers:
    """How much deeper, wider and larger-input a model is than its base."""

    depth: float = 1.0
    width: float = 1.0
    resolution: float = 1.0

    @property
    def flops_factor(self) -> float:
        """Predicted FLOPs ratio to the base: d * w^2 * r^2 (Tan & Le 2019, Sec. 3.3)."""
        return self.depth * self.width ** 2 * self.resolution ** 2

    def model_overrides(self) -> dict[str, float]:
        """The `create_model` overrides that apply the depth and width multipliers."""
        return {'depth_multiplier': self.depth, 'width_multiplier': self.width}


def compound(phi: float, alpha: float = ALPHA, beta: float = BETA,
             gamma: float = GAMMA) -> Multipliers:
    """Compound scaling, Eq. 3: d = alpha^phi, w = beta^phi, r = gamma^phi."""
    return Multipliers(depth=alpha ** phi, width=beta ** phi, resolution=gamma ** phi)


def flops_constraint(alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> float:
    """alpha * beta^2 * gamma^2, which Eq. 3 asks to be ~2 (1.92 for the paper's values)."""
    return alpha * beta ** 2 * gamma ** 2


def depth_only(multiplier: float) -> Multipliers:
    return Multipliers(depth=multiplier)


def width_only(multiplier: float) -> Multipliers:
    return Multipliers(width=multiplier)


def resolution_only(multiplier: float) -> Multipliers:
    return Multipliers(resolution=multiplier)


def round_filters(channels: int, multiplier: float, divisor: int = 8) -> int:
    """Channels after width scaling: EfficientNet's `round_filters` (nearest multiple of 8, bumped
    by 8 if that lost over 10%). Multiplier 1 leaves the count alone, so unscaled families whose
    widths are not multiples of 8 (DenseNet's growth rate 12, say) keep their published shapes."""
    # Imported here, as below: the model files import this module, so it imports none of them.
    from jaxconv.models.layers import make_divisible

    if multiplier == 1.0:
        return channels
    return make_divisible(channels * multiplier, divisor)


def round_repeats(repeats: int, multiplier: float) -> int:
    """Blocks after depth scaling: EfficientNet's `round_repeats`, ceil(multiplier * repeats)."""
    return int(math.ceil(multiplier * repeats))


def scale_resolution(base: int, multiplier: float, divisor: int = 1) -> int:
    """Input size after resolution scaling, rounded to the nearest multiple of `divisor`."""
    return max(divisor, int(round(base * multiplier / divisor)) * divisor)


def flops_report(model_name: str, points: Mapping[str, Multipliers], base_resolution: int,
                 **overrides: Any) -> list[dict[str, Any]]:
    """Multiply-adds of `model_name` scaled to each named point, relative to the unscaled model.

    Each row holds the point's multipliers, its resolution, its MACs, the measured ratio to the base
    and the predicted `flops_factor`; for compound scaling both should be close to 2^phi.
    """
    from jaxconv.models.flops import count_macs
    from jaxconv.models.registry import create_model

    base_macs = count_macs(create_model(model_name, **overrides), base_resolution)
    rows = []
    for name, point in points.items():
        resolution = scale_resolution(base_resolution, point.resolution)
        model = create_model(model_name, **{**overrides, **point.model_overrides()})
        macs = count_macs(model, resolution)
        rows.append({'name': name, 'depth': point.depth, 'width': point.width,
                     'resolution': resolution, 'macs': macs, 'relative_macs': macs / base_macs,
                     'predicted': point.flops_factor})
    return rows
