"""EfficientNet B0-B7 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", Table 1 for B0, Sec. 3.3 for compound scaling).

B0 is a stack of MBConv blocks (Sandler et al. 2018; Tan et al. 2019): 1x1 expansion, k x k
depthwise conv, squeeze-excite to 0.25 of the block's *input* channels, linear 1x1 projection, and
an identity shortcut with stochastic depth when shapes allow. Swish everywhere, BatchNorm momentum
0.99 and epsilon 1e-3 (the TF reference). B1-B7 are not typed in: each is B0 with its width,
depth, resolution and dropout coefficients, turned into channels by `round_filters` (stem and head
included) and into repeats by `ceil`, exactly as the TF and timm builders do. `scaling='published'`
uses the released coefficients (which do not follow alpha^phi...); `scaling='formula'` computes
them from any phi, alpha, beta, gamma (jaxconv/scaling.py). `tf_same_padding=True` pads like TF
"SAME" so that TF-ported weights (timm `tf_efficientnet_*`) reproduce TF outputs; shapes and
parameter counts do not change. Stochastic depth uses the shared linear 'block' rule (last block
at the full rate); the TF code uses rate * i / N, which stops one block short of it.
Parameter names follow timm (`conv_stem`, `bn1`, `blocks{i}_{j}/conv_dw`, `conv_head`,
`classifier`).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.layers import (
    DropPath,
    ModuleDef,
    SqueezeExcite,
    batch_norm,
    check_min_input,
    drop_path_rates,
    get_activation,
)
from jaxconv.models.registry import register_model
from jaxconv.scaling import (
    ALPHA,
    BETA,
    GAMMA,
    compound,
    round_filters,
    round_repeats,
    scale_resolution,
)

# EfficientNet-B0, Tan & Le 2019 Table 1, stages 2-8:
# (repeats, kernel, stride, expansion, output channels).
B0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
B0_STEM, B0_HEAD, B0_RESOLUTION = 32, 1280, 224

# phi: (width, depth, resolution, dropout) as released with the paper (tensorflow/tpu
# models/official/efficientnet/efficientnet_builder.py `efficientnet_params`; resolutions as in
# Tan & Le 2019 Table 2). They are rounded by hand, not alpha^phi, beta^phi, gamma^phi.
PUBLISHED_COEFFICIENTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}

# TF EfficientNet's init: normal with std sqrt(2 / fan_out); for a depthwise kernel TF's fan-out
# is k*k, which is flax's fan-in of a (k, k, 1, C) kernel. Classifier: uniform +-1/sqrt(classes).
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
depthwise_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_out', 'uniform')


def efficientnet_coefficients(phi: float, scaling: str = 'published', alpha: float = ALPHA,
                              beta: float = BETA, gamma: float = GAMMA
                              ) -> tuple[float, float, int, float]:
    """(width, depth, resolution, dropout) of EfficientNet-B{phi}.

    'published' looks phi up in the released table; 'formula' is Eq. 3, width beta^phi, depth
    alpha^phi, resolution 224 gamma^phi, with the dropout of the nearest published variant.
    """
    if scaling == 'published':
        if phi not in PUBLISHED_COEFFICIENTS:
            raise ValueError(f'no published EfficientNet coefficients for phi={phi}; valid: 0-7, '
                             f"or scaling='formula' for any phi")
        return PUBLISHED_COEFFICIENTS[phi]
    if scaling == 'formula':
        m = compound(phi, alpha, beta, gamma)
        dropout = PUBLISHED_COEFFICIENTS[min(max(round(phi), 0), 7)][3]
        return m.width, m.depth, scale_resolution(B0_RESOLUTION, m.resolution), dropout
    raise ValueError(f'unknown scaling {scaling!r}; valid: published, formula')


def scaled_stages(width: float, depth: float, stages: Sequence[Sequence[int]] = B0_STAGES,
                  stem: int = B0_STEM, head: int = B0_HEAD
                  ) -> tuple[int, list[tuple[int, int, int, int, int]], int]:
    """(stem channels, scaled stages, head channels): round_filters on widths, ceil on repeats."""
    scaled = [(round_repeats(r, depth), k, s, e, round_filters(c, width))
              for r, k, s, e, c in stages]
    return round_filters(stem, width), scaled, round_filters(head, width)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand-BN-swish] dw kxk-BN-swish, SE, 1x1 project-BN, [+ input]."""

    features: int
    kernel_size: int
    strides: int
    expand_ratio: int
    conv: ModuleDef
    norm: ModuleDef
    act: Any
    drop_path: ModuleDef
    se: ModuleDef | None = None
    padding: Any = 1
    drop_path_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, norm, act = self.conv, self.norm, self.act
        in_features = x.shape[-1]
        mid = in_features * self.expand_ratio
        y = x
        if self.expand_ratio != 1:  # B0's first stage has no expansion conv.
            y = act(norm(name='bn1')(conv(mid, (1, 1), name='conv_pw')(y)))
        k = self.kernel_size
        y = conv(mid, (k, k), self.strides, padding=self.padding, feature_group_count=mid,
                 kernel_init=depthwise_init, name='conv_dw')(y)
        y = act(norm(name='bn2')(y))
        if self.se is not None:
            y = self.se(reduce_base=in_features, name='se')(y)
        y = norm(name='bn3')(conv(self.features, (1, 1), name='conv_pwl')(y))
        if self.strides != 1 or in_features != self.features:
            return y
        if self.drop_path_rate > 0:
            y = self.drop_path(self.drop_path_rate)(y)
        return x + y


class EfficientNet(nn.Module):
    """EfficientNet: B0's stages scaled by `width_multiplier` and `depth_multiplier`."""

    num_classes: int = 1000
    width_multiplier: float = 1.0
    depth_multiplier: float = 1.0
    dropout_rate: float = 0.2
    drop_path_rate: float = 0.2  # TF's drop_connect_rate (survival 0.8 at the deep end).
    drop_path_rule: str = 'block'
    se_ratio: float = 0.25
    stages: Sequence[Sequence[int]] = B0_STAGES
    stem_width: int = B0_STEM
    head_width: int = B0_HEAD
    activation: str = 'swish'
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    tf_same_padding: bool = False
    default_image_size: int = B0_RESOLUTION  # The training resolution; read by configs only.
    variant: str = 'efficientnet'
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        stem, stages, head = scaled_stages(self.width_multiplier, self.depth_multiplier,
                                           self.stages, self.stem_width, self.head_width)
        total_stride = 2
        for _, _, stride, _, _ in stages:
            total_stride *= stride
        check_min_input(self.variant, x, total_stride)
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = batch_norm(train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                          dtype=self.dtype, group_size=self.bn_group_size)
        act = get_activation(self.activation)
        se = functools.partial(SqueezeExcite, self.se_ratio, divisor=1, activation=self.activation,
                               dtype=self.dtype) if self.se_ratio > 0 else None
        drop_path = functools.partial(DropPath, deterministic=not train)
        padding = (lambda k: 'SAME') if self.tf_same_padding else (lambda k: k // 2)

        x = x.astype(self.dtype)
        x = act(norm(name='bn1')(conv(stem, (3, 3), 2, padding=padding(3), name='conv_stem')(x)))
        rates = drop_path_rates([s[0] for s in stages], self.drop_path_rate, self.drop_path_rule)
        for i, ((_, kernel, stride, expand, features), stage_rates) in enumerate(
                zip(stages, rates, strict=True)):
            for j, rate in enumerate(stage_rates):
                x = MBConv(features, kernel, stride if j == 0 else 1, expand, conv, norm, act,
                           drop_path, se=se, padding=padding(kernel), drop_path_rate=rate,
                           name=f'blocks{i}_{j}')(x)
        x = act(norm(name='bn2')(conv(head, (1, 1), name='conv_head')(x)))

        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                        name='classifier')(x)


def _create(variant: str, *, phi: float, scaling: str = 'published', alpha: float = ALPHA,
            beta: float = BETA, gamma: float = GAMMA, **kwargs: Any) -> EfficientNet:
    """B{phi} from its coefficients; explicit overrides (e.g. width_multiplier) win over them."""
    width, depth, resolution, dropout = efficientnet_coefficients(phi, scaling, alpha, beta, gamma)
    coefficients = dict(width_multiplier=width, depth_multiplier=depth,
                        default_image_size=resolution, dropout_rate=dropout)
    return EfficientNet(variant=variant, **{**coefficients, **kwargs})


for _phi in PUBLISHED_COEFFICIENTS:
    register_model(functools.partial(_create, f'efficientnet_b{_phi}', phi=_phi),
                   name=f'efficientnet_b{_phi}')
