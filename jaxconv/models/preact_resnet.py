"""Pre-activation ResNets (ResNet v2) and the CIFAR Wide ResNets built on them.

- ResNet v2 (He et al. 2016, "Identity Mappings in Deep Residual Networks", Fig. 1b / Fig. 4e):
  every residual branch is BN-ReLU-conv (twice for the basic block, three times for the
  bottleneck), the identity path is untouched, and one BN-ReLU follows the last block before
  pooling. ImageNet depths as ResNet v1 (`preact_resnet18`...`preact_resnet200`); CIFAR as Sec. 4
  and Table 3 of the paper: basic 6n+2 (`preact_resnet20`...`preact_resnet110`) and bottleneck
  9n+2 (`preact_resnet164`) with 16-32-64 (x4 for the bottleneck) channels.
- Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016, Table 1): pre-activation basic blocks,
  (d - 4) / 6 per stage, widths 16k, 32k, 64k after a 16-channel stem, dropout between the two
  convs (`block_dropout_rate`, Sec. 2.4). WRN-28-10 has 36.5M parameters.

When a block changes shape, its 1x1 projection shortcut takes the pre-activated input, as the
paper's and WRN's code do (the identity path otherwise stays free of BN and ReLU). The stem is
a bare conv because the first block pre-activates its output. There is no BN at the end of a
residual branch, so there is no zero-init-last option here.

`keras_resnet50v2/101v2/152v2` are Keras' ResNetV2 (see `KERAS`): the same blocks, but each
stage downsamples at its end (a 1x1/2 subsampling of the identity), and the stem, shortcut and
last branch convs carry biases.
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
    conv7x7_stem,
    get_activation,
    pool2d,
)
from jaxconv.models.registry import register_variants
from jaxconv.models.resnet import IMAGENET_DEPTHS, conv_init, stage_plan


class PreActBlock(nn.Module):
    """BN-ReLU-conv residual block: basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 x4)."""

    planes: int
    strides: int
    bottleneck: bool
    conv: ModuleDef
    norm: ModuleDef
    act: Any
    dropout: ModuleDef
    drop_path: ModuleDef
    se: ModuleDef | None = None
    drop_path_rate: float = 0.0
    subsample_identity: bool = False  # A strided block of unchanged width subsamples its input.
    output_bias: bool = False  # A bias on the convs no BatchNorm follows (shortcut, last).

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, norm, act = self.conv, self.norm, self.act
        output_conv = functools.partial(conv, use_bias=self.output_bias)
        features = self.planes * 4 if self.bottleneck else self.planes
        preact = act(norm(name='bn1')(x))
        shortcut = x
        if x.shape[-1] != features or (self.strides != 1 and not self.subsample_identity):
            shortcut = output_conv(features, (1, 1), self.strides, name='downsample')(preact)
        elif self.strides != 1:  # Keras' 1x1/s max pool of the raw input.
            shortcut = x[:, ::self.strides, ::self.strides, :]
        if self.bottleneck:
            y = act(norm(name='bn2')(conv(self.planes, (1, 1), name='conv1')(preact)))
            y = conv(self.planes, (3, 3), self.strides, padding=1, name='conv2')(y)
            y = self.dropout()(act(norm(name='bn3')(y)))
            y = output_conv(features, (1, 1), name='conv3')(y)
        else:
            y = conv(self.planes, (3, 3), self.strides, padding=1, name='conv1')(preact)
            y = self.dropout()(act(norm(name='bn2')(y)))
            y = output_conv(features, (3, 3), padding=1, name='conv2')(y)
        if self.se is not None:
            y = self.se(name='se')(y)
        if self.drop_path_rate > 0:
            y = self.drop_path(self.drop_path_rate)(y)
        return shortcut + y


class PreActResNet(BatchNormKnobs, StochasticDepthKnobs, ScalingKnobs):
    """ResNet v2: `stem` 'imagenet' (7x7/2 conv + 3x3/2 max pool) or 'cifar' (one 3x3 conv)."""

    stage_depths: Sequence[int]
    bottleneck: bool = True
    stage_widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = 'imagenet'
    stem_width: int = 64
    block_dropout_rate: float = 0.0
    se_ratio: float = 0.0
    activation: str = 'relu'
    # Keras' ResNetV2 layout: each stage but the last downsamples in its last block (the others
    # in their first), the convs that no BatchNorm follows have a bias, and the stem's max pool
    # pads its un-normalised input with zeros (ZeroPadding2D), not with -inf.
    downsample_last: bool = False
    output_bias: bool = False
    stem_pool_zero_pad: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in ('imagenet', 'cifar'):
            raise ValueError(f'unknown stem {self.stem!r}; valid: imagenet, cifar')
        stem_stride = 4 if self.stem == 'imagenet' else 1
        check_min_input(self.variant, x, stem_stride * 2 ** (len(self.stage_depths) - 1))
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = self.norm_layer(train)
        act = get_activation(self.activation)
        dropout = functools.partial(nn.Dropout, self.block_dropout_rate, deterministic=not train)
        drop_path = functools.partial(DropPath, deterministic=not train)
        se = functools.partial(SqueezeExcite, self.se_ratio, divisor=8, activation=self.activation,
                               dtype=self.dtype) if self.se_ratio > 0 else None

        x = x.astype(self.dtype)
        stem_width = self.scaled_width(self.stem_width)
        stem_conv = functools.partial(conv, use_bias=self.output_bias)
        if self.stem == 'imagenet':  # No norm: the first block pre-activates.
            x = conv7x7_stem(x, stem_width, stem_conv,
                             pool='none' if self.stem_pool_zero_pad else 'max')
            if self.stem_pool_zero_pad:
                x = pool2d('max', jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), 3, 2)
        else:
            x = stem_conv(stem_width, (3, 3), padding=1, name='conv1')(x)

        plan = stage_plan(self, self.stage_depths, self.stage_widths)
        for i, (planes, rates) in enumerate(plan):
            for j, rate in enumerate(rates):
                if self.downsample_last:
                    strides = 2 if i < len(plan) - 1 and j == len(rates) - 1 else 1
                else:
                    strides = 2 if i > 0 and j == 0 else 1
                x = PreActBlock(planes, strides, self.bottleneck, conv, norm, act, dropout,
                                drop_path, se=se, drop_path_rate=rate,
                                subsample_identity=self.downsample_last,
                                output_bias=self.output_bias, name=f'layer{i + 1}_{j}')(x)

        x = act(norm(name='bn_final')(x))
        return self.classify(x, train, name='fc')


# He et al. 2016's ImageNet nets use ResNet v1's stage depths (resnet.IMAGENET_DEPTHS).
P18, P34, P50, P101, P152, P200 = (
    dict(bottleneck=b, stage_depths=d) for b, d in IMAGENET_DEPTHS.values())
# Keras' ResNet50V2/101V2/152V2 (keras.applications.resnet_v2): BN epsilon 1.001e-5, momentum 0.99.
KERAS = dict(downsample_last=True, output_bias=True, stem_pool_zero_pad=True,
             bn_epsilon=1.001e-5, bn_momentum=0.99)
CIFAR = dict(stem='cifar', stem_width=16, stage_widths=(16, 32, 64), default_image_size=32,
             bottleneck=False)


def _wide(depth: int, k: int) -> dict[str, Any]:
    """WRN-depth-k (Zagoruyko & Komodakis 2016, Table 1): (depth - 4) / 6 blocks per stage."""
    n = (depth - 4) // 6
    return dict(CIFAR, stage_depths=(n,) * 3, stage_widths=(16 * k, 32 * k, 64 * k))


# Every registered name and the PreActResNet fields it sets.
VARIANTS: dict[str, dict[str, Any]] = {
    'preact_resnet18': P18,
    'preact_resnet34': P34,
    'preact_resnet50': P50,
    'preact_resnet101': P101,
    'preact_resnet152': P152,
    'preact_resnet200': P200,
    'keras_resnet50v2': dict(P50, **KERAS),
    'keras_resnet101v2': dict(P101, **KERAS),
    'keras_resnet152v2': dict(P152, **KERAS),
    'preact_resnet20': dict(CIFAR, stage_depths=(3, 3, 3)),  # 6n + 2 layers, basic blocks.
    'preact_resnet32': dict(CIFAR, stage_depths=(5, 5, 5)),
    'preact_resnet44': dict(CIFAR, stage_depths=(7, 7, 7)),
    'preact_resnet56': dict(CIFAR, stage_depths=(9, 9, 9)),
    'preact_resnet110': dict(CIFAR, stage_depths=(18, 18, 18)),
    # 9n + 2 bottleneck layers, He et al. 2016 Table 3 (ResNet-1001 is stage_depths=(111,) * 3).
    'preact_resnet164': dict(CIFAR, stage_depths=(18, 18, 18), bottleneck=True),
    'wrn16_4': _wide(16, 4),  # Zagoruyko & Komodakis 2016, Tables 4-6.
    'wrn16_8': _wide(16, 8),
    'wrn28_10': _wide(28, 10),
    'wrn40_2': _wide(40, 2),
    'wrn40_4': _wide(40, 4),
}
register_variants(PreActResNet, VARIANTS)
