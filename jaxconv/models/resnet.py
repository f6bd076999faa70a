"""ResNet v1 and the families that share its post-activation core, configured by data.

- ResNet (He et al. 2015, "Deep Residual Learning for Image Recognition"): Table 1 for the ImageNet
  nets (basic block for 18/34, bottleneck for 50/101/152; 200 from He et al. 2016), Sec. 4.2 for the
  CIFAR nets (6n+2 layers, 16-32-64 channels, option A zero-padding or option B projection
  shortcuts). The bottleneck strides on its 3x3 conv as torchvision and timm ("v1.5");
  `stride_in_1x1=True` restores the paper's stride on the first 1x1; `keras_resnet50/101/152`
  are that original v1 as Keras builds it (a bias on every conv, BN epsilon 1.001e-5).
- ResNet-D (He et al. 2019, "Bag of Tricks", Fig. 2b-c): three-3x3-conv stem and a 2x2 average pool
  before the 1x1 shortcut projection (`stem='deep'`, `shortcut='avg_down'`).
- SE-ResNet / SE-ResNeXt (Hu et al. 2018, Table 1): squeeze-excite on each residual branch.
- Wide ResNet for ImageNet (Zagoruyko & Komodakis 2016, torchvision's wide_resnet50_2): the
  bottleneck 3x3 twice as wide (`base_width=128`).
- ResNeXt (Xie et al. 2017, Table 1 for ImageNet, Sec. 5.3 / Table 7 for the 29-layer CIFAR nets):
  grouped 3x3 convs, width `cardinality x bottleneck_width` (`groups`, `base_width`).
- ResNet-RS (Bello et al. 2021, "Revisiting ResNets"): ResNet-D with SE 0.25, a strided 3x3 conv in
  place of the stem max pool, per-depth stages, image size, dropout and per-stage stochastic depth.

Parameter names follow torchvision/timm (`conv1`, `bn1`, `layer{i}_{j}/conv2`, `downsample`, `fc`)
so PyTorch checkpoints map onto this tree one to one.
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

# He et al. 2015's init (Sec. 3.4), as torchvision: normal with std sqrt(2 / fan_out).
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class Shortcut(nn.Module):
    """The identity path of a block whose output shape differs from its input.

    'conv': 1x1 strided projection + BN (option B). 'avg_down': 2x2 average pool then 1x1 conv + BN
    (ResNet-D; ceil mode without counting the padding, as timm). 'pad': subsample and zero-pad the
    new channels, parameter-free (option A of the CIFAR ResNets).
    """

    features: int
    strides: int
    kind: str
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        strides = self.strides
        if self.kind == 'pad':
            x = x[:, ::strides, ::strides, :]
            extra = self.features - x.shape[-1]
            return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        if self.kind == 'avg_down' and strides > 1:
            pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))  # ceil_mode on odd sizes.
            x = nn.avg_pool(x, (2, 2), (2, 2), padding=pad, count_include_pad=False)
            strides = 1
        elif self.kind not in ('conv', 'avg_down'):
            raise ValueError(f'unknown shortcut {self.kind!r}; valid: conv, avg_down, pad')
        x = self.conv(self.features, (1, 1), strides, name='conv')(x)
        return self.norm(name='bn')(x)


class ResidualBlock(nn.Module):
    """Basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 x4) block with BN-ReLU after each conv (v1).

    Options (SE, zero-init of the last BN scale, drop path) act on the residual branch only,
    before the addition; `drop_path_rate` is this block's own rate, computed by the network.
    """

    planes: int
    strides: int
    bottleneck: bool
    conv: ModuleDef
    norm: ModuleDef
    act: Any
    drop_path: ModuleDef
    shortcut: str = 'conv'
    groups: int = 1
    base_width: int = 64
    stride_in_1x1: bool = False
    se: ModuleDef | None = None
    zero_init_last: bool = True
    drop_path_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, norm, act = self.conv, self.norm, self.act
        last_norm = functools.partial(norm, scale_init=nn.initializers.zeros) \
            if self.zero_init_last else norm
        if self.bottleneck:
            features = self.planes * 4
            width = int(self.planes * self.base_width / 64) * self.groups
            s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
            y = act(norm(name='bn1')(conv(width, (1, 1), s1, name='conv1')(x)))
            y = conv(width, (3, 3), s3, padding=1, feature_group_count=self.groups, name='conv2')(y)
            y = act(norm(name='bn2')(y))
            y = last_norm(name='bn3')(conv(features, (1, 1), name='conv3')(y))
        else:
            features = self.planes
            y = act(norm(name='bn1')(conv(features, (3, 3), self.strides, padding=1,
                                          name='conv1')(x)))
            y = last_norm(name='bn2')(conv(features, (3, 3), padding=1, name='conv2')(y))
        if self.se is not None:
            y = self.se(name='se')(y)
        if self.drop_path_rate > 0:
            y = self.drop_path(self.drop_path_rate)(y)
        if self.strides != 1 or x.shape[-1] != features:
            x = Shortcut(features, self.strides, self.shortcut, conv, norm, name='downsample')(x)
        return act(x + y)


def stage_plan(network: 'ResNet', depths: Sequence[int],
               widths: Sequence[int]) -> list[tuple[int, list[float]]]:
    """(scaled width, per-block drop-path rates) of each stage: where a residual network applies
    its depth/width multipliers and its stochastic-depth schedule, once."""
    if len(depths) != len(widths):
        raise ValueError(f'stage_depths {tuple(depths)} and stage_widths {tuple(widths)} need '
                         'one entry per stage each')
    rates = network.drop_path_schedule([network.scaled_depth(d) for d in depths])
    return [(network.scaled_width(w), r) for w, r in zip(widths, rates, strict=True)]


class ResNet(BatchNormKnobs, StochasticDepthKnobs, ScalingKnobs):
    """Post-activation ResNet / ResNet-D / SE-ResNet / Wide ResNet / ResNeXt / ResNet-RS.

    `stem` is 'imagenet' (7x7/2 conv), 'deep' (3x3/2, 3x3, 3x3 of stem_width, stem_width,
    2 stem_width; ResNet-C/D) or 'cifar' (one 3x3); `stem_pool` is 'max' (3x3/2), 'conv' (3x3/2 conv
    + BN + ReLU; ResNet-RS) or 'none'. The first stage keeps the resolution, the others halve it.
    """

    stage_depths: Sequence[int]
    bottleneck: bool = True
    stage_widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = 'imagenet'
    stem_width: int = 64
    stem_pool: str = 'max'
    shortcut: str = 'conv'
    groups: int = 1
    base_width: int = 64
    stride_in_1x1: bool = False
    zero_init_last: bool = True
    se_ratio: float = 0.0
    activation: str = 'relu'
    conv_bias: bool = False  # True: every conv has a bias, BatchNorm or not (Keras' ResNet).

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        stem_stride = 1 if self.stem == 'cifar' else 2
        pool_stride = 1 if self.stem_pool == 'none' else 2
        min_size = stem_stride * pool_stride * 2 ** (len(self.stage_depths) - 1)
        check_min_input(self.variant, x, min_size)
        conv = functools.partial(nn.Conv, use_bias=self.conv_bias, dtype=self.dtype,
                                 kernel_init=conv_init)
        norm = self.norm_layer(train)
        act = get_activation(self.activation)
        se = functools.partial(SqueezeExcite, self.se_ratio, divisor=8, activation=self.activation,
                               dtype=self.dtype) if self.se_ratio > 0 else None
        drop_path = functools.partial(DropPath, deterministic=not train)

        x = x.astype(self.dtype)
        stem_width = self.scaled_width(self.stem_width)
        if self.stem == 'imagenet':
            x = conv7x7_stem(x, stem_width, conv, norm, act, pool='none')  # Pooled below.
        else:
            if self.stem == 'deep':  # Two 3x3 convs before conv1, which doubles the width.
                for i, features in enumerate((stem_width, stem_width)):
                    x = conv(features, (3, 3), 2 if i == 0 else 1, padding=1,
                             name=f'conv1_{i}')(x)
                    x = act(norm(name=f'bn1_{i}')(x))
                stem_width *= 2
            elif self.stem != 'cifar':
                raise ValueError(f'unknown stem {self.stem!r}; valid: imagenet, deep, cifar')
            x = act(norm(name='bn1')(conv(stem_width, (3, 3), padding=1, name='conv1')(x)))
        if self.stem_pool == 'max':
            x = pool2d('max', x, window=3, stride=2, padding=((1, 1), (1, 1)))
        elif self.stem_pool == 'conv':
            x = conv(x.shape[-1], (3, 3), 2, padding=1, name='stem_pool_conv')(x)
            x = act(norm(name='stem_pool_bn')(x))
        elif self.stem_pool != 'none':
            raise ValueError(f'unknown stem_pool {self.stem_pool!r}; valid: max, conv, none')

        for i, (planes, rates) in enumerate(stage_plan(self, self.stage_depths,
                                                       self.stage_widths)):
            for j, rate in enumerate(rates):
                x = ResidualBlock(
                    planes, 2 if i > 0 and j == 0 else 1, self.bottleneck, conv, norm, act,
                    drop_path, shortcut=self.shortcut, groups=self.groups,
                    base_width=self.base_width, stride_in_1x1=self.stride_in_1x1, se=se,
                    zero_init_last=self.zero_init_last, drop_path_rate=rate,
                    name=f'layer{i + 1}_{j}')(x)

        return self.classify(x, train, name='fc')


# ImageNet depths: He et al. 2015 Table 1; 200 from He et al. 2016 (fb.resnet.torch).
# depth: (bottleneck, stage depths); preact_resnet.py reads it too.
IMAGENET_DEPTHS = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
    200: (True, (3, 24, 36, 3)),
}
R18, R34, R50, R101, R152, R200 = (
    dict(bottleneck=b, stage_depths=d) for b, d in IMAGENET_DEPTHS.values())
# CIFAR ResNets (He et al. 2015, Sec. 4.2): a 3x3 stem, three stages of 16-32-64, no pooling.
CIFAR = dict(stem='cifar', stem_width=16, stem_pool='none', stage_widths=(16, 32, 64),
             bottleneck=False, default_image_size=32)
CIFAR_A = dict(CIFAR, shortcut='pad')  # Option A: parameter-free shortcuts (Table 6).
RESNET_D = dict(stem='deep', stem_width=32, shortcut='avg_down')  # He et al. 2019, Fig. 2b-c.
SE = dict(se_ratio=1 / 16)  # Hu et al. 2018, reduction ratio r = 16.
# ResNeXt-29 (Xie et al. 2017, Sec. 5.3): bottleneck blocks with 64-wide groups on 32x32.
RESNEXT29 = dict(CIFAR, stage_depths=(3, 3, 3), bottleneck=True, stem_width=64,
                 stage_widths=(64, 128, 256), base_width=64)
# ResNet-RS (Bello et al. 2021) as released in tensorflow/tpu models/official/resnet/resnet_rs
# (configs/resnetrs*_i*.yaml; stage depths in resnet_model.py), summarised in
# ../shared/reference/anchors.md: ResNet-D, SE 0.25, a strided conv for the stem pool, per-stage
# stochastic depth. Where the release has several image sizes (RS-101, -152, -350) the table
# holds the best one.
RESNET_RS = dict(RESNET_D, stem_pool='conv', se_ratio=0.25, drop_path_rule='stage')
# Keras' ResNet50/101/152 (keras.applications.resnet): the paper's v1, stride on the first 1x1,
# a bias on every conv, BatchNorm epsilon 1.001e-5 and Keras' momentum 0.99.
KERAS = dict(stride_in_1x1=True, conv_bias=True, bn_epsilon=1.001e-5, bn_momentum=0.99)

# Every registered name and the ResNet fields it sets (the one place a variant is defined).
VARIANTS: dict[str, dict[str, Any]] = {
    'resnet18': R18,
    'resnet34': R34,
    'resnet50': R50,
    'resnet101': R101,
    'resnet152': R152,
    'resnet200': R200,
    'keras_resnet50': dict(R50, **KERAS),
    'keras_resnet101': dict(R101, **KERAS),
    'keras_resnet152': dict(R152, **KERAS),
    'resnet18d': dict(R18, **RESNET_D),
    'resnet34d': dict(R34, **RESNET_D),
    'resnet50d': dict(R50, **RESNET_D),
    'resnet101d': dict(R101, **RESNET_D),
    'resnet152d': dict(R152, **RESNET_D),
    'resnet200d': dict(R200, **RESNET_D),
    'resnet20': dict(CIFAR_A, stage_depths=(3, 3, 3)),  # He et al. 2015 Table 6: 6n + 2 layers.
    'resnet32': dict(CIFAR_A, stage_depths=(5, 5, 5)),
    'resnet44': dict(CIFAR_A, stage_depths=(7, 7, 7)),
    'resnet56': dict(CIFAR_A, stage_depths=(9, 9, 9)),
    'resnet110': dict(CIFAR_A, stage_depths=(18, 18, 18)),
    'seresnet50': dict(R50, **SE),
    'seresnet101': dict(R101, **SE),
    'seresnet152': dict(R152, **SE),
    'resnext50_32x4d': dict(R50, groups=32, base_width=4),
    'resnext101_32x8d': dict(R101, groups=32, base_width=8),
    'seresnext50_32x4d': dict(R50, groups=32, base_width=4, **SE),
    'wide_resnet50_2': dict(R50, base_width=128),
    'wide_resnet101_2': dict(R101, base_width=128),
    'resnext29_8x64d': dict(RESNEXT29, groups=8),
    'resnext29_16x64d': dict(RESNEXT29, groups=16),
    'resnet_rs50': dict(RESNET_RS, stage_depths=(3, 4, 6, 3), default_image_size=160,
                        dropout_rate=0.25, drop_path_rate=0.0),
    'resnet_rs101': dict(RESNET_RS, stage_depths=(3, 4, 23, 3), default_image_size=192,
                         dropout_rate=0.25, drop_path_rate=0.0),
    'resnet_rs152': dict(RESNET_RS, stage_depths=(3, 8, 36, 3), default_image_size=256,
                         dropout_rate=0.25, drop_path_rate=0.0),
    'resnet_rs200': dict(RESNET_RS, stage_depths=(3, 24, 36, 3), default_image_size=256,
                         dropout_rate=0.25, drop_path_rate=0.1),
    'resnet_rs270': dict(RESNET_RS, stage_depths=(4, 29, 53, 4), default_image_size=256,
                         dropout_rate=0.25, drop_path_rate=0.1),
    'resnet_rs350': dict(RESNET_RS, stage_depths=(4, 36, 72, 4), default_image_size=320,
                         dropout_rate=0.4, drop_path_rate=0.1),
    'resnet_rs420': dict(RESNET_RS, stage_depths=(4, 44, 87, 4), default_image_size=320,
                         dropout_rate=0.4, drop_path_rate=0.1),
}
register_variants(ResNet, VARIANTS)
