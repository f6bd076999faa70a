"""ShuffleNet v1 (Zhang et al. 2018, "ShuffleNet: An Extremely Efficient Convolutional Neural
Network for Mobile Devices", Fig. 1-2, Table 1-2) and ShuffleNet v2 (Ma et al. 2018, "ShuffleNet
V2: Practical Guidelines for Efficient CNN Architecture Design", Fig. 3c-d, Table 5).

Both: a 3x3/2 conv with 24 filters - BN - ReLU and a 3x3/2 max pool, three stages that each
start with a stride-2 unit (stage 2, 3, 4: 4, 8 and 4 units), global average pooling, FC. The
channel shuffle (v1 Fig. 1c) reshapes the channels into (groups, channels / groups), transposes
and flattens, so that the next grouped layer sees every group of the previous one.

v1 unit (Fig. 2b-c): 1x1 group conv to a bottleneck of 1/4 of the unit's output channels - BN -
ReLU - shuffle - 3x3 depthwise (stride 1 or 2) - BN - 1x1 group conv - BN; stride 1 adds the
input and applies ReLU; stride 2 concatenates a 3x3/2 average pool of the input (so its group
conv outputs the difference) and applies ReLU. The first 1x1 of stage 2 is not grouped: its 24
input channels are too few (Sec. 3.3). Output channels per stage for g = 1, 2, 3, 4, 8 are
Table 1's; "ShuffleNet s x" scales every layer by s (`width_multiplier`; Table 2 has 0.25, 0.5,
1). The paper does not say how scaled widths round. Here the stage widths round to a multiple of
4g (the bottleneck and both group convs then split evenly, as every Table 1 width does) and the
stem to a multiple of g (the first group conv outputs stage width - stem width), both by
`make_divisible`; that reproduces the authors' released 0.5x models (megvii ShuffleNet-Series:
12/120/240/480 for g = 3, 16/192/384/768 for g = 8). Padding is symmetric (PyTorch, as that
release); the shortcut's average pool counts its padding. Stochastic depth, if asked for, drops
the residual branch of the stride-1 units.

v2 unit (Fig. 3c-d): stride 1 splits the channels in halves, keeps one and sends the other
through 1x1 - BN - ReLU - 3x3 depthwise - BN - 1x1 - BN - ReLU; stride 2 sends the whole input
through that branch (stride on the depthwise) and through a 3x3/2 depthwise - BN - 1x1 - BN -
ReLU branch; both concatenate and shuffle with 2 groups. A 1x1 conv (1024 channels, 2048 at 2x)
- BN - ReLU precedes the pool. Widths are Table 5's, written out (not a multiplier rule).
Layout and counts follow torchvision's `shufflenet_v2_x*`: 1,366,792 / 2,278,604 / 3,503,624 /
7,393,996 parameters at 1000 classes, and its multiply-adds (0.04 / 0.145 / 0.296 / 0.583 G).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import BatchNormKnobs, ScalingKnobs, StochasticDepthKnobs
from jaxconv.models.layers import ConvNormAct, DropPath, ModuleDef, check_min_input
from jaxconv.models.registry import register_variants


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """v1 Fig. 1c: channels as (groups, per group) -> transpose -> flatten (NHWC)."""
    *spatial, channels = x.shape
    x_NHWxGxC = x.reshape(*spatial, groups, channels // groups)
    return jnp.swapaxes(x_NHWxGxC, -1, -2).reshape(x.shape)


def stem(x: jax.Array, features: int, conv: ModuleDef) -> jax.Array:
    """3x3/2 conv - BN - ReLU and 3x3/2 max pool, both padded by 1 (Table 1 of both papers)."""
    x = conv(features, 3, strides=2, padding=1, name='conv1')(x)
    return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class ShuffleUnitV1(nn.Module):
    """v1 Fig. 2b (stride 1, residual add) and 2c (stride 2, concatenated average pool)."""

    features: int
    strides: int
    groups: int
    first_groups: int  # Groups of the first 1x1: 1 for the first unit of stage 2.
    conv: ModuleDef
    drop_path: ModuleDef
    drop_path_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, groups = self.conv, self.groups
        bottleneck = self.features // 4
        branch = self.features - (x.shape[-1] if self.strides == 2 else 0)
        y = conv(bottleneck, 1, groups=self.first_groups, name='gconv1')(x)
        if groups > 1:
            y = channel_shuffle(y, groups)
        y = conv(bottleneck, 3, strides=self.strides, padding=1, groups=bottleneck,
                 activation=None, name='dwconv')(y)
        y = conv(branch, 1, groups=groups, activation=None, name='gconv2')(y)
        if self.strides == 1:
            if self.drop_path_rate > 0:
                y = self.drop_path(self.drop_path_rate)(y)
            return nn.relu(x + y)
        shortcut = nn.avg_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        return nn.relu(jnp.concatenate([shortcut, y], axis=-1))


class ShuffleNetV1(BatchNormKnobs, StochasticDepthKnobs, ScalingKnobs):
    """ShuffleNet v1 with `groups` g and Table 1's 1x stage widths, scaled by width_multiplier."""

    groups: int
    stage_widths: Sequence[int]
    stage_depths: Sequence[int] = (4, 8, 4)
    stem_width: int = 24

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, 32)
        conv = functools.partial(ConvNormAct, norm=self.norm_layer(train), dtype=self.dtype)
        drop_path = functools.partial(DropPath, deterministic=not train)
        g = self.groups
        x = stem(x.astype(self.dtype), self.scaled_width(self.stem_width, divisor=g), conv)
        depths = [self.scaled_depth(d) for d in self.stage_depths]
        for i, (width, rates) in enumerate(zip(self.stage_widths,
                                               self.drop_path_schedule(depths), strict=True)):
            features = self.scaled_width(width, divisor=4 * g)
            for j, rate in enumerate(rates):
                x = ShuffleUnitV1(features, 2 if j == 0 else 1, g,
                                  1 if i == 0 and j == 0 else g, conv, drop_path, rate,
                                  name=f'stage{i + 2}_{j}')(x)
        return self.classify(x, train, name='fc')


class ShuffleUnitV2(nn.Module):
    """v2 Fig. 3c (stride 1: channel split) and 3d (stride 2: two branches), then shuffle."""

    features: int
    strides: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, half = self.conv, self.features // 2
        if self.strides == 1:
            kept, x = jnp.split(x, 2, axis=-1)
        else:
            channels = x.shape[-1]
            kept = conv(channels, 3, strides=2, padding=1, groups=channels, activation=None,
                        name='branch1_0')(x)
            kept = conv(half, 1, name='branch1_1')(kept)
        y = conv(half, 1, name='branch2_0')(x)
        y = conv(half, 3, strides=self.strides, padding=1, groups=half, activation=None,
                 name='branch2_1')(y)
        y = conv(half, 1, name='branch2_2')(y)
        return channel_shuffle(jnp.concatenate([kept, y], axis=-1), 2)


class ShuffleNetV2(BatchNormKnobs):
    """ShuffleNet v2: stem, stages 2-4 of Table 5's widths, 1x1 conv5, pool, FC."""

    stage_widths: Sequence[int]  # Stages 2, 3, 4.
    final_width: int = 1024
    stage_depths: Sequence[int] = (4, 8, 4)
    stem_width: int = 24

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, 32)
        conv = functools.partial(ConvNormAct, norm=self.norm_layer(train), dtype=self.dtype)
        x = stem(x.astype(self.dtype), self.stem_width, conv)
        for i, (width, depth) in enumerate(zip(self.stage_widths, self.stage_depths,
                                               strict=True)):
            for j in range(depth):
                x = ShuffleUnitV2(width, 2 if j == 0 else 1, conv, name=f'stage{i + 2}_{j}')(x)
        x = conv(self.final_width, 1, name='conv5')(x)
        return self.classify(x, train, name='fc')


# v1 Table 1: output channels of stages 2-4 at 1x for each number of groups g.
V1_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
             8: (384, 768, 1536)}
V1_G1, V1_G2, V1_G3, V1_G4, V1_G8 = (dict(groups=g, stage_widths=w) for g, w in V1_WIDTHS.items())

# Every registered name and the fields it sets (the one place a variant is defined). v1: Table 2's
# groups x scale grid, plus the issue's `shufflenet_v1_g{g}` names for the 1x nets.
V1_VARIANTS: dict[str, dict[str, Any]] = {
    'shufflenet_v1_g1': V1_G1,
    'shufflenet_v1_g2': V1_G2,
    'shufflenet_v1_g3': V1_G3,
    'shufflenet_v1_g4': V1_G4,
    'shufflenet_v1_g8': V1_G8,
    'shufflenet_v1_g1_x1_0': V1_G1,
    'shufflenet_v1_g2_x1_0': V1_G2,
    'shufflenet_v1_g3_x1_0': V1_G3,
    'shufflenet_v1_g4_x1_0': V1_G4,
    'shufflenet_v1_g8_x1_0': V1_G8,
    'shufflenet_v1_g1_x0_5': dict(V1_G1, width_multiplier=0.5),
    'shufflenet_v1_g2_x0_5': dict(V1_G2, width_multiplier=0.5),
    'shufflenet_v1_g3_x0_5': dict(V1_G3, width_multiplier=0.5),
    'shufflenet_v1_g4_x0_5': dict(V1_G4, width_multiplier=0.5),
    'shufflenet_v1_g8_x0_5': dict(V1_G8, width_multiplier=0.5),
    'shufflenet_v1_g1_x0_25': dict(V1_G1, width_multiplier=0.25),
    'shufflenet_v1_g2_x0_25': dict(V1_G2, width_multiplier=0.25),
    'shufflenet_v1_g3_x0_25': dict(V1_G3, width_multiplier=0.25),
    'shufflenet_v1_g4_x0_25': dict(V1_G4, width_multiplier=0.25),
    'shufflenet_v1_g8_x0_25': dict(V1_G8, width_multiplier=0.25),
}
# v2 Table 5 (torchvision's stages_out_channels).
V2_VARIANTS: dict[str, dict[str, Any]] = {
    'shufflenet_v2_x0_5': dict(stage_widths=(48, 96, 192)),
    'shufflenet_v2_x1_0': dict(stage_widths=(116, 232, 464)),
    'shufflenet_v2_x1_5': dict(stage_widths=(176, 352, 704)),
    'shufflenet_v2_x2_0': dict(stage_widths=(244, 488, 976), final_width=2048),
}
register_variants(ShuffleNetV1, V1_VARIANTS)
register_variants(ShuffleNetV2, V2_VARIANTS)
