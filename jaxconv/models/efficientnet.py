"""EfficientNet B0-B7 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", Table 1 for B0, Sec. 3.3 for compound scaling).

B0 is a stack of MBConv blocks (Sandler et al. 2018; Tan et al. 2019): 1x1 expansion, k x k
depthwise conv, squeeze-excite to 0.25 of the block's *input* channels, linear 1x1 projection, and
an identity shortcut with stochastic depth when shapes allow; swish everywhere. B1-B7 are not
typed in: each is B0 with its width, depth, resolution and dropout coefficients, turned into
channels by `round_filters` (stem and head included) and into repeats by `ceil`, exactly as the TF
and timm builders do (`ScalingKnobs`). `compound_overrides(phi, alpha, beta, gamma)` gives the
overrides of Eq. 3's coefficients for any phi instead of the released ones (which do not follow
alpha^phi ...). Stochastic depth uses the shared linear 'block' rule (last block at the full rate);
the TF code uses rate * i / N, which stops one block short of it.

Layout. `efficientnet_b*` is the TF reference layout, since the recipe (configs/efficientnet.py)
is TF's: TF "SAME" padding, BatchNorm momentum 0.99 and epsilon 1e-3 (tensorflow/tpu
efficientnet_model.py); `tf_efficientnet_b*` names the same networks by timm's name for its TF
port, whose weights they take. timm's PyTorch-native `efficientnet_b*` (its own training; symmetric
padding, epsilon 1e-5, momentum 0.1) is the same network with `PYTORCH_LAYOUT`'s overrides:
`create_model('efficientnet_b0', padding='symmetric', bn_epsilon=1e-5, bn_momentum=0.9)`. Shapes
and parameter counts are the same in both; only strided convs and the BatchNorm epsilon differ.
Parameter names follow timm (`conv_stem`, `bn1`, `blocks{i}_{j}/conv_dw`, `conv_head`,
`classifier`). `keras_efficientnetb*` are Keras' EfficientNetB0-B7: the TF layout with Keras' input
layers inside the model (`KerasInputNormalization`: it takes pixels in 0-255) and TF's
drop-connect schedule.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import BatchNormKnobs, ScalingKnobs, StochasticDepthKnobs
from jaxconv.models.layers import (
    DropPath,
    ModuleDef,
    SqueezeExcite,
    check_min_input,
    conv_general_dilated,
    conv_padding,
    get_activation,
)
from jaxconv.models.registry import register_variants
from jaxconv.scaling import ALPHA, BETA, GAMMA, compound, scale_resolution

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
# The TF reference's padding and BatchNorm (efficientnet_builder.py: momentum 0.99, epsilon 1e-3).
TF_LAYOUT = dict(padding='same', bn_momentum=0.99, bn_epsilon=1e-3)
# timm's PyTorch-native efficientnet_b*: nn.BatchNorm2d defaults (momentum 0.1), symmetric padding.
PYTORCH_LAYOUT = dict(padding='symmetric', bn_momentum=0.9, bn_epsilon=1e-5)

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


def compound_overrides(phi: float, scaling: str = 'formula', alpha: float = ALPHA,
                       beta: float = BETA, gamma: float = GAMMA) -> dict[str, Any]:
    """`create_model('efficientnet_b0', **compound_overrides(phi))`: B0 scaled by Eq. 3."""
    width, depth, resolution, dropout = efficientnet_coefficients(phi, scaling, alpha, beta, gamma)
    return dict(width_multiplier=width, depth_multiplier=depth, default_image_size=resolution,
                dropout_rate=dropout)


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
                 conv_general_dilated=conv_general_dilated, kernel_init=depthwise_init,
                 name='conv_dw')(y)
        y = act(norm(name='bn2')(y))
        if self.se is not None:
            y = self.se(reduce_base=in_features, name='se')(y)
        y = norm(name='bn3')(conv(self.features, (1, 1), name='conv_pwl')(y))
        if self.strides != 1 or in_features != self.features:
            return y
        if self.drop_path_rate > 0:
            y = self.drop_path(self.drop_path_rate)(y)
        return x + y


class KerasInputNormalization(nn.Module):
    """Keras' EfficientNet input layers: `Rescaling(1 / 255)`, then `Normalization` by a
    per-channel mean and variance, (x - mean) / max(sqrt(var), 1e-7).

    Keras keeps the mean, the variance and the number of images they were adapted on (`count`,
    unused here) as non-trainable weights, 7 values for RGB that its parameter counts include;
    they live in `batch_stats` so that they load with a checkpoint and are never trained.
    Unadapted (weights=None) they are 0 and 1, so the layer is x / 255.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[-1],)
        mean = self.variable('batch_stats', 'mean', jnp.zeros, shape, jnp.float32)
        var = self.variable('batch_stats', 'var', jnp.ones, shape, jnp.float32)
        self.variable('batch_stats', 'count', jnp.zeros, (), jnp.float32)
        std = jnp.maximum(jnp.sqrt(var.value), 1e-7)
        return ((x / 255.0 - mean.value) / std).astype(x.dtype)


class EfficientNet(BatchNormKnobs, StochasticDepthKnobs, ScalingKnobs):
    """EfficientNet: B0's stages scaled by `width_multiplier` and `depth_multiplier`."""

    se_ratio: float = 0.25
    stages: Sequence[Sequence[int]] = B0_STAGES
    stem_width: int = B0_STEM
    head_width: int = B0_HEAD
    activation: str = 'swish'
    padding: str = 'same'  # 'same': TF's (the reference); 'symmetric': timm's native PyTorch.
    keras_input_normalization: bool = False  # Keras' in-model input scaling (takes 0-255 input).

    def plan(self) -> tuple[int, list[tuple[int, int, int, int, int]], int]:
        """(stem channels, scaled stages, head channels): B0's widths and repeats scaled."""
        stages = [(self.scaled_depth(r), k, s, e, self.scaled_width(c))
                  for r, k, s, e, c in self.stages]
        return self.scaled_width(self.stem_width), stages, self.scaled_width(self.head_width)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        stem, stages, head = self.plan()
        total_stride = 2
        for _, _, stride, _, _ in stages:
            total_stride *= stride
        check_min_input(self.variant, x, total_stride)
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = self.norm_layer(train)
        act = get_activation(self.activation)
        se = functools.partial(SqueezeExcite, self.se_ratio, divisor=1, activation=self.activation,
                               dtype=self.dtype) if self.se_ratio > 0 else None
        drop_path = functools.partial(DropPath, deterministic=not train)
        padding = functools.partial(conv_padding, self.padding)

        x = x.astype(self.dtype)
        if self.keras_input_normalization:
            x = KerasInputNormalization(name='input_normalization')(x)
        x = act(norm(name='bn1')(conv(stem, (3, 3), 2, padding=padding(3), name='conv_stem')(x)))
        rates = self.drop_path_schedule([s[0] for s in stages])
        for i, ((_, kernel, stride, expand, features), stage_rates) in enumerate(
                zip(stages, rates, strict=True)):
            for j, rate in enumerate(stage_rates):
                x = MBConv(features, kernel, stride if j == 0 else 1, expand, conv, norm, act,
                           drop_path, se=se, padding=padding(kernel), drop_path_rate=rate,
                           name=f'blocks{i}_{j}')(x)
        x = act(norm(name='bn2')(conv(head, (1, 1), name='conv_head')(x)))
        return self.classify(x, train, name='classifier', kernel_init=dense_init)


def _published(phi: int) -> dict[str, Any]:
    """The variant table's entry of B{phi}: released coefficients, TF layout, drop-connect 0.2."""
    width, depth, resolution, dropout = PUBLISHED_COEFFICIENTS[phi]
    return dict(TF_LAYOUT, width_multiplier=width, depth_multiplier=depth,
                default_image_size=resolution, dropout_rate=dropout, drop_path_rate=0.2)


def _keras(phi: int) -> dict[str, Any]:
    """Keras' EfficientNetB{phi} (keras.applications.efficientnet): the TF network with its input
    Rescaling + Normalization layers, and drop-connect at 0.2 * i / N for block i of N."""
    return dict(_published(phi), keras_input_normalization=True, drop_path_rule='tf_block')


# Every registered name and the EfficientNet fields it sets. `tf_efficientnet_b*` is timm's name
# for the TF port: the same networks, registered so that the name of the weights finds them.
VARIANTS: dict[str, dict[str, Any]] = {
    'efficientnet_b0': _published(0),
    'efficientnet_b1': _published(1),
    'efficientnet_b2': _published(2),
    'efficientnet_b3': _published(3),
    'efficientnet_b4': _published(4),
    'efficientnet_b5': _published(5),
    'efficientnet_b6': _published(6),
    'efficientnet_b7': _published(7),
    'tf_efficientnet_b0': _published(0),
    'tf_efficientnet_b1': _published(1),
    'tf_efficientnet_b2': _published(2),
    'tf_efficientnet_b3': _published(3),
    'tf_efficientnet_b4': _published(4),
    'tf_efficientnet_b5': _published(5),
    'tf_efficientnet_b6': _published(6),
    'tf_efficientnet_b7': _published(7),
    'keras_efficientnetb0': _keras(0),
    'keras_efficientnetb1': _keras(1),
    'keras_efficientnetb2': _keras(2),
    'keras_efficientnetb3': _keras(3),
    'keras_efficientnetb4': _keras(4),
    'keras_efficientnetb5': _keras(5),
    'keras_efficientnetb6': _keras(6),
    'keras_efficientnetb7': _keras(7),
}
register_variants(EfficientNet, VARIANTS)
