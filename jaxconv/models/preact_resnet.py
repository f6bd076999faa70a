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
    get_activation,
    pool2d,
)
from jaxconv.models.registry import register_model
from jaxconv.models.resnet import IMAGENET_DEPTHS, conv_init, stage_plan
from jaxconv.scaling import round_filters


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

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, norm, act = self.conv, self.norm, self.act
        features = self.planes * 4 if self.bottleneck else self.planes
        preact = act(norm(name='bn1')(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != features:
            shortcut = conv(features, (1, 1), self.strides, name='downsample')(preact)
        if self.bottleneck:
            y = act(norm(name='bn2')(conv(self.planes, (1, 1), name='conv1')(preact)))
            y = conv(self.planes, (3, 3), self.strides, padding=1, name='conv2')(y)
            y = self.dropout()(act(norm(name='bn3')(y)))
            y = conv(features, (1, 1), name='conv3')(y)
        else:
            y = conv(self.planes, (3, 3), self.strides, padding=1, name='conv1')(preact)
            y = self.dropout()(act(norm(name='bn2')(y)))
            y = conv(features, (3, 3), padding=1, name='conv2')(y)
        if self.se is not None:
            y = self.se(name='se')(y)
        if self.drop_path_rate > 0:
            y = self.drop_path(self.drop_path_rate)(y)
        return shortcut + y


class PreActResNet(nn.Module):
    """ResNet v2: `stem` 'imagenet' (7x7/2 conv + 3x3/2 max pool) or 'cifar' (one 3x3 conv)."""

    stage_depths: Sequence[int]
    num_classes: int = 1000
    bottleneck: bool = True
    stage_widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = 'imagenet'
    stem_width: int = 64
    block_dropout_rate: float = 0.0
    se_ratio: float = 0.0
    activation: str = 'relu'
    depth_multiplier: float = 1.0
    width_multiplier: float = 1.0
    drop_path_rate: float = 0.0
    drop_path_rule: str = 'block'
    dropout_rate: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    default_image_size: int = 224  # The training resolution of the recipe; read by configs only.
    variant: str = 'preact_resnet'
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in ('imagenet', 'cifar'):
            raise ValueError(f'unknown stem {self.stem!r}; valid: imagenet, cifar')
        stem_stride = 4 if self.stem == 'imagenet' else 1
        check_min_input(self.variant, x, stem_stride * 2 ** (len(self.stage_depths) - 1))
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = batch_norm(train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                          dtype=self.dtype, group_size=self.bn_group_size)
        act = get_activation(self.activation)
        dropout = functools.partial(nn.Dropout, self.block_dropout_rate, deterministic=not train)
        drop_path = functools.partial(DropPath, deterministic=not train)
        se = functools.partial(SqueezeExcite, self.se_ratio, divisor=8, activation=self.activation,
                               dtype=self.dtype) if self.se_ratio > 0 else None

        x = x.astype(self.dtype)
        stem_width = round_filters(self.stem_width, self.width_multiplier)
        if self.stem == 'imagenet':
            x = conv(stem_width, (7, 7), 2, padding=3, name='conv1')(x)
            x = pool2d('max', x, window=3, stride=2, padding=((1, 1), (1, 1)))
        else:
            x = conv(stem_width, (3, 3), padding=1, name='conv1')(x)

        plan = stage_plan(self.stage_depths, self.stage_widths, self.depth_multiplier,
                          self.width_multiplier, self.drop_path_rate, self.drop_path_rule)
        for i, (planes, rates) in enumerate(plan):
            for j, rate in enumerate(rates):
                x = PreActBlock(planes, 2 if i > 0 and j == 0 else 1, self.bottleneck, conv, norm,
                                act, dropout, drop_path, se=se, drop_path_rate=rate,
                                name=f'layer{i + 1}_{j}')(x)

        x = act(norm(name='bn_final')(x))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)


CIFAR = dict(stem='cifar', stem_width=16, stage_widths=(16, 32, 64), default_image_size=32)


def _variants() -> dict[str, dict[str, Any]]:
    """Every registered name and the PreActResNet arguments it fills in."""
    table: dict[str, dict[str, Any]] = {}
    for depth, (bottleneck, depths) in IMAGENET_DEPTHS.items():
        table[f'preact_resnet{depth}'] = dict(stage_depths=depths, bottleneck=bottleneck)
    for n in (3, 5, 7, 9, 18):  # 6n+2 basic: 20, 32, 44, 56, 110.
        table[f'preact_resnet{6 * n + 2}'] = dict(CIFAR, stage_depths=(n,) * 3, bottleneck=False)
    # 9n+2 bottleneck, He et al. 2016 Table 3 (ResNet-1001 is stage_depths=(111,) * 3).
    table['preact_resnet164'] = dict(CIFAR, stage_depths=(18,) * 3, bottleneck=True)
    # WRN-d-k of Zagoruyko & Komodakis 2016, Tables 4-6.
    for depth, k in ((16, 4), (16, 8), (28, 10), (40, 2), (40, 4)):
        n = (depth - 4) // 6
        table[f'wrn{depth}_{k}'] = dict(CIFAR, stage_depths=(n,) * 3, bottleneck=False,
                                        stage_widths=(16 * k, 32 * k, 64 * k))
    return table


def _create(variant: str, **kwargs: Any) -> PreActResNet:
    return PreActResNet(variant=variant, **kwargs)


for _name, _args in _variants().items():
    register_model(functools.partial(_create, _name, **_args), name=_name)
