"""Inception-ResNet v1 and v2 (Szegedy, Ioffe, Vanhoucke & Alemi 2016, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", Figs. 7 and 10-19, Table 1).

Both are a stem, residual Inception blocks at 35x35 (A), 17x17 (B) and 8x8 (C) with Reduction-A
(Fig. 7) and Reduction-B between, global average pooling, dropout (keep 0.8) and the classifier.
A residual block runs its branches (conv-BN-ReLU, no bias), concatenates them, maps them back to
the input width with a linear 1x1 conv (bias, no BN: "batch-normalization only on top of the
traditional layers, but not on top of the summations", Sec. 3.2), scales that by 0.1-0.3
(Sec. 3.3: 0.17, 0.10, 0.20 in the release), adds it to the input and applies ReLU. Drop path, when
set, drops the scaled branch.

- `inception_resnet_v1` is the paper's network, derived from its figures (no library has it): the
  stem of Fig. 14 (35x35x256), 5 x A (Fig. 10), Reduction-A with (k, l, m, n) = (192, 192, 256,
  384), 10 x B (Fig. 11), Reduction-B (Fig. 12), 5 x C (Fig. 13), as laid out in Fig. 15.
- `inception_resnet_v2` is the network Google released (TF-slim) and timm ports
  (`inception_resnet_v2`, 55,843,464 parameters at 1000 classes), whose logits it reproduces. It
  has the block branches of Figs. 16, 17, 19 and 18 (Reduction-B) and Reduction-A with (256, 256,
  384, 384), but differs from the figures where the paper describes a network the release does
  not contain: the stem is Inception-v3's with a 320-wide mixed block (not Fig. 3's 384), hence
  1088- and 2080-wide grids (not 1152 and 2048); 10 / 20 / 10 blocks (not Fig. 15's 5 / 10 / 5);
  the last C block is added unscaled and without ReLU, and a 1x1 conv to 1536 precedes the pool.
- `keras_inceptionresnetv2` is Keras' `InceptionResNetV2`, the same release with BatchNorm
  without a learned scale (`bn_scale=False`, TF-slim's default) and Keras' BN momentum 0.99:
  55,813,192 trainable parameters, 55,873,736 variables with BN moving statistics.

Names follow TF-slim at the top (Conv2d_1a_3x3 ... Mixed_5b, block35_1 ..., Mixed_6a, block17_1
..., Mixed_7a, block8_1 ..., Conv2d_7b_1x1) and timm inside the blocks (branch0, branch1_0, ...;
`conv_linear` for the 1x1 back to the input width).
"""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax

from jaxconv.models.base import BatchNormKnobs, StochasticDepthKnobs
from jaxconv.models.inception_blocks import ReductionA, avg_pool_3x3, concat
from jaxconv.models.layers import ConvNormAct, DropPath, ModuleDef, check_min_input, pool2d
from jaxconv.models.registry import register_variants

V = 'VALID'  # The figures' "V": no padding.
# A block's branches, each a chain of (filters, kernel) convs; kernel is k or (height, width).
Branches = Sequence[Sequence[tuple[int, int | tuple[int, int]]]]


class InceptionResNetBlock(nn.Module):
    """Figs. 10, 11, 13 (v1) and 16, 17, 19 (v2): relu(x + scale * linear_1x1(concat(branches)))."""

    branches: Branches
    scale: float
    conv: ModuleDef
    activate: bool = True
    drop_path_rate: float = 0.0
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        outputs = []
        for i, chain in enumerate(self.branches):
            y = x
            for j, (features, kernel) in enumerate(chain):
                y = self.conv(features, kernel, name=f'branch{i}' if len(chain) == 1
                              else f'branch{i}_{j}')(y)
            outputs.append(y)
        y = nn.Conv(x.shape[-1], (1, 1), dtype=x.dtype, name='conv_linear')(concat(outputs))
        x = x + DropPath(self.drop_path_rate, self.deterministic)(y * self.scale)
        return nn.relu(x) if self.activate else x


class ReductionB(nn.Module):
    """Figs. 12 (v1) and 18 (v2), 17x17 -> 8x8: 1x1 256 -> 3x3/2 `widths[0]` |
    1x1 256 -> 3x3/2 `widths[1]` | 1x1 256 -> 3x3 `widths[2]` -> 3x3/2 `widths[3]` | max pool."""

    widths: tuple[int, int, int, int]
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, (w0, w1, w2, w3) = self.conv, self.widths
        b0 = conv(256, 1, name='branch0_0')(x)
        b0 = conv(w0, 3, strides=2, padding=V, name='branch0_1')(b0)
        b1 = conv(256, 1, name='branch1_0')(x)
        b1 = conv(w1, 3, strides=2, padding=V, name='branch1_1')(b1)
        b2 = conv(256, 1, name='branch2_0')(x)
        b2 = conv(w2, 3, name='branch2_1')(b2)
        b2 = conv(w3, 3, strides=2, padding=V, name='branch2_2')(b2)
        return concat([b0, b1, b2, pool2d('max', x, window=3, stride=2)])


class Mixed5b(nn.Module):
    """The released v2's last stem block at 35x35 (Inception-v3's Fig. 5 module, 320 wide):
    1x1 96 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 64."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b0 = conv(96, 1, name='branch0')(x)
        b1 = conv(48, 1, name='branch1_0')(x)
        b1 = conv(64, 5, name='branch1_1')(b1)
        b2 = conv(64, 1, name='branch2_0')(x)
        b2 = conv(96, 3, name='branch2_1')(b2)
        b2 = conv(96, 3, name='branch2_2')(b2)
        b3 = conv(64, 1, name='branch3')(avg_pool_3x3(x))
        return concat([b0, b1, b2, b3])


class InceptionResNet(BatchNormKnobs, StochasticDepthKnobs):
    """Stem, three stages of residual blocks with Reduction-A and -B between, classifier."""

    stem: str  # 'v1': Fig. 14; 'v2': the released stem (Inception-v3's plus Mixed_5b).
    block35: Branches  # Inception-ResNet-A (35x35).
    block17: Branches  # Inception-ResNet-B (17x17).
    block8: Branches  # Inception-ResNet-C (8x8).
    reduction_a: tuple[int, int, int, int]  # Table 1's (k, l, m, n).
    reduction_b: tuple[int, int, int, int]
    stage_repeats: Sequence[int]  # Blocks of A, B, C.
    residual_scales: Sequence[float] = (0.17, 0.10, 0.20)  # Sec. 3.3, as released.
    linear_last_block: bool = False  # The last C block: scale 1, no ReLU (the release).
    final_conv: int = 0  # Width of a 1x1 conv before the pool (1536 in the release); 0: none.
    bn_scale: bool = True  # False: BatchNorm without a learned scale (TF-slim, Keras).

    min_size: ClassVar[int] = 75  # The unpadded stem and reductions leave 1x1 at 75x75.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, self.min_size)
        norm = self.norm_layer(train)
        if not self.bn_scale:
            norm = functools.partial(norm, use_scale=False)
        conv = functools.partial(ConvNormAct, norm=norm, padding='SAME', dtype=self.dtype)

        x = x.astype(self.dtype)
        x = conv(32, 3, strides=2, padding=V, name='Conv2d_1a_3x3')(x)
        x = conv(32, 3, padding=V, name='Conv2d_2a_3x3')(x)
        x = conv(64, 3, name='Conv2d_2b_3x3')(x)
        x = pool2d('max', x, window=3, stride=2)
        x = conv(80, 1, name='Conv2d_3b_1x1')(x)
        x = conv(192, 3, padding=V, name='Conv2d_4a_3x3')(x)
        if self.stem == 'v1':
            x = conv(256, 3, strides=2, padding=V, name='Conv2d_4b_3x3')(x)
        elif self.stem == 'v2':
            x = pool2d('max', x, window=3, stride=2)
            x = Mixed5b(conv, name='Mixed_5b')(x)
        else:
            raise ValueError(f'unknown stem {self.stem!r}; valid: v1, v2')

        stages = [('block35', self.block35), ('block17', self.block17), ('block8', self.block8)]
        rates = self.drop_path_schedule(self.stage_repeats)
        for s, ((kind, branches), scale, stage_rates) in enumerate(
                zip(stages, self.residual_scales, rates, strict=True)):
            for i, rate in enumerate(stage_rates):
                last = self.linear_last_block and s == 2 and i == len(stage_rates) - 1
                x = InceptionResNetBlock(branches, 1.0 if last else scale, conv,
                                         activate=not last, drop_path_rate=rate,
                                         deterministic=not train, name=f'{kind}_{i + 1}')(x)
            if s == 0:
                x = ReductionA(*self.reduction_a, conv, name='Mixed_6a')(x)
            elif s == 1:
                x = ReductionB(self.reduction_b, conv, name='Mixed_7a')(x)
        if self.final_conv:
            x = conv(self.final_conv, 1, name='Conv2d_7b_1x1')(x)
        return self.classify(x, train, name='fc')


# Inception-ResNet-v1 (Figs. 10-15), with the paper's 5 / 10 / 5 blocks.
V1 = dict(
    stem='v1',
    block35=(((32, 1),), ((32, 1), (32, 3)), ((32, 1), (32, 3), (32, 3))),
    block17=(((128, 1),), ((128, 1), (128, (1, 7)), (128, (7, 1)))),
    block8=(((192, 1),), ((192, 1), (192, (1, 3)), (192, (3, 1)))),
    reduction_a=(192, 192, 256, 384),
    reduction_b=(384, 256, 256, 256),
    stage_repeats=(5, 10, 5),
)
# Inception-ResNet-v2 as released (TF-slim inception_resnet_v2.py; timm; Keras).
V2 = dict(
    stem='v2',
    block35=(((32, 1),), ((32, 1), (32, 3)), ((32, 1), (48, 3), (64, 3))),
    block17=(((192, 1),), ((128, 1), (160, (1, 7)), (192, (7, 1)))),
    block8=(((192, 1),), ((192, 1), (224, (1, 3)), (256, (3, 1)))),
    reduction_a=(256, 256, 384, 384),
    reduction_b=(384, 288, 288, 320),
    stage_repeats=(10, 20, 10),
    linear_last_block=True,
    final_conv=1536,
)
# Fig. 15: dropout keep 0.8 (also the Keras layout's training default: its graph has none);
# TF-slim's BatchNorm epsilon 1e-3.
COMMON = dict(default_image_size=299, dropout_rate=0.2, bn_epsilon=1e-3)

# Every registered name and the fields it sets (the one place a variant is defined).
VARIANTS: dict[str, dict[str, Any]] = {
    'inception_resnet_v1': dict(COMMON, **V1),
    'inception_resnet_v2': dict(COMMON, **V2),
    'keras_inceptionresnetv2': dict(COMMON, **V2, bn_scale=False, bn_momentum=0.99),
}
register_variants(InceptionResNet, VARIANTS)
