"""Scaling rules (jaxconv/scaling.py) against hand-computed multipliers, and the FLOPs check."""

import pytest

from jaxconv import scaling
from jaxconv.models import efficientnet

# Hand-computed powers of the paper's alpha = 1.2, beta = 1.1, gamma = 1.15 (Tan & Le 2019 Sec. 3.3)
# and 224 * gamma^phi rounded to the nearest pixel: phi: (depth, width, resolution multiplier, px).
HAND = {
    1: (1.2, 1.1, 1.15, 258),
    2: (1.44, 1.21, 1.3225, 296),
    3: (1.728, 1.331, 1.520875, 341),
    4: (2.0736, 1.4641, 1.74900625, 392),
    5: (2.48832, 1.61051, 2.0113571875, 451),
    6: (2.985984, 1.771561, 2.313060765625, 518),
    7: (3.5831808, 1.9487171, 2.66001988046875, 596),
}


@pytest.mark.parametrize('phi', sorted(HAND))
def test_compound_multipliers_by_hand(phi):
    depth, width, resolution, pixels = HAND[phi]
    m = scaling.compound(phi)
    assert (m.depth, m.width, m.resolution) == pytest.approx((depth, width, resolution))
    assert m.flops_factor == pytest.approx(scaling.flops_constraint() ** phi)
    assert efficientnet.efficientnet_coefficients(phi, 'formula') == pytest.approx(
        (width, depth, pixels, efficientnet.PUBLISHED_COEFFICIENTS[phi][3]))


def test_flops_constraint_and_single_axis_rules():
    assert scaling.flops_constraint() == pytest.approx(1.92027)  # 1.2 * 1.1^2 * 1.15^2 ~ 2.
    assert scaling.flops_constraint(1.0, 2 ** 0.5, 1.0) == pytest.approx(2.0)
    assert scaling.depth_only(2.0) == scaling.Multipliers(depth=2.0)
    assert scaling.width_only(1.5).flops_factor == pytest.approx(2.25)
    assert scaling.resolution_only(1.5).flops_factor == pytest.approx(2.25)
    assert scaling.compound(2, 1.1, 1.2, 1.0).model_overrides() == pytest.approx(
        {'depth_multiplier': 1.21, 'width_multiplier': 1.44})


@pytest.mark.parametrize('channels, multiplier, expected', [
    (32, 1.1, 32),  # 35.2 rounds down to 32, which keeps over 90%.
    (16, 1.2, 24),  # 19.2 rounds to 16 < 0.9 * 19.2, so it is bumped to 24.
    (112, 1.1, 120), (40, 1.1, 48), (1280, 2.0, 2560), (192, 1.8, 344),
    (12, 1.0, 12),  # Multiplier 1 keeps widths that are not multiples of 8.
    (4, 0.5, 8),  # Never below the divisor.
])
def test_round_filters(channels, multiplier, expected):
    assert scaling.round_filters(channels, multiplier) == expected


@pytest.mark.parametrize('repeats, multiplier, expected', [
    (1, 1.1, 2), (3, 3.1, 10), (4, 3.1, 13), (2, 1.0, 2), (3, 0.3, 1)])
def test_round_repeats(repeats, multiplier, expected):
    assert scaling.round_repeats(repeats, multiplier) == expected


def test_scale_resolution():
    assert scaling.scale_resolution(224, 1.15) == 258
    assert scaling.scale_resolution(224, 1.15, divisor=32) == 256


def test_compound_scaling_roughly_doubles_flops_per_phi():
    """EfficientNet-B0 scaled by the formula: measured MACs grow with phi like the 1.92^phi
    prediction, but above it: ceil on B0's short stages (1-4 blocks) overshoots the depth
    multiplier (phi=1 gives 23 blocks, not 1.2 x 16), so phi=1 measures 2.57x and phi=2 4.69x."""
    points = {f'phi={phi}': scaling.compound(phi) for phi in (1, 2)}
    rows = scaling.flops_report('efficientnet_b0', points, base_resolution=224)
    for phi, row in zip((1, 2), rows, strict=True):
        assert row['resolution'] == HAND[phi][3]
        assert row['predicted'] == pytest.approx(scaling.flops_constraint() ** phi)
        assert row['predicted'] < row['relative_macs'] < 1.4 * row['predicted']
    assert rows[1]['relative_macs'] / rows[0]['relative_macs'] == pytest.approx(2, rel=0.1)


def test_single_axis_scaling_of_a_resnet():
    """Depth x2 about doubles the cost, width x2 and resolution x2 about quadruple it. (Depth lands
    a little above 2: the added blocks lack the half-cost strided first conv; width a little below
    4: the stem's input and the classifier's output do not widen.)"""
    points = {'depth': scaling.depth_only(2.0), 'width': scaling.width_only(2.0),
              'resolution': scaling.resolution_only(2.0)}
    rows = {r['name']: r for r in scaling.flops_report('resnet20', points, 32, num_classes=10)}
    assert rows['depth']['relative_macs'] == pytest.approx(2.0, rel=0.05)
    assert rows['width']['relative_macs'] == pytest.approx(4.0, rel=0.02)
    assert rows['resolution']['relative_macs'] == pytest.approx(4.0, rel=1e-3)
    assert rows['resolution']['resolution'] == 64
