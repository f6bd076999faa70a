"""DenseNet-BC (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected Convolutional
Networks", Table 1 for ImageNet, Sec. 3-4 and Table 2 for CIFAR).

Each layer of a dense block sees the concatenation of all earlier feature maps and adds `k`
(growth rate) new ones through BN-ReLU-1x1 conv (`bn_size * k` channels, the "B" bottleneck) and
BN-ReLU-3x3 conv. Transitions between blocks are BN-ReLU-1x1 conv to `compression` (0.5, the "C")
of the channels, then 2x2 average pooling; the network ends with BN-ReLU and global pooling.
ImageNet nets have a 7x7/2 conv + 3x3/2 max pool stem of 2k channels (96 for DenseNet-161) and
four blocks (`densenet121/169/201/161`, torchvision names and counts); CIFAR DenseNet-BC has a
single 3x3 conv of 2k channels and three blocks of (L - 4) / 6 layers (`densenet_bc100_k12`).
Parameter names follow torchvision (`conv0`, `norm0`, `denseblock{i}_denselayer{j}/conv1`,
`transition{i}`, `norm5`, `classifier`).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import BatchNormKnobs, ScalingKnobs
from jaxconv.models.layers import (
    ModuleDef,
    check_min_input,
    conv7x7_stem,
    get_activation,
    pool2d,
)
from jaxconv.models.registry import register_variants

# torchvision's DenseNet init: Kaiming normal on fan-in.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (bn_size * k) -> BN-ReLU-3x3 (k) -> dropout, concatenated to the input."""

    growth_rate: int
    bn_size: int
    conv: ModuleDef
    norm: ModuleDef
    act: Any
    dropout: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.act(self.norm(name='norm1')(x))
        y = self.conv(self.bn_size * self.growth_rate, (1, 1), name='conv1')(y)
        y = self.act(self.norm(name='norm2')(y))
        y = self.conv(self.growth_rate, (3, 3), padding=1, name='conv2')(y)
        return jnp.concatenate([x, self.dropout()(y)], axis=-1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to `features` channels, then 2x2 average pooling (Sec. 3, "Pooling")."""

    features: int
    conv: ModuleDef
    norm: ModuleDef
    act: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(self.features, (1, 1), name='conv')(self.act(self.norm(name='norm')(x)))
        return pool2d('avg', x, window=2, stride=2)


class DenseNet(BatchNormKnobs, ScalingKnobs):
    """DenseNet-BC; `stem` 'imagenet' (7x7/2 conv-BN-ReLU + max pool) or 'cifar' (one 3x3 conv).

    `width_multiplier` scales the growth rate and the stem, `depth_multiplier` the layers per
    block (ceil); `dropout_rate` acts before the classifier, `layer_dropout_rate` after each
    dense layer (0.2 in the paper's runs without augmentation).
    """

    block_config: Sequence[int]
    growth_rate: int = 32
    num_init_features: int = 64
    bn_size: int = 4
    compression: float = 0.5
    stem: str = 'imagenet'
    layer_dropout_rate: float = 0.0
    activation: str = 'relu'

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in ('imagenet', 'cifar'):
            raise ValueError(f'unknown stem {self.stem!r}; valid: imagenet, cifar')
        stem_stride = 4 if self.stem == 'imagenet' else 1
        check_min_input(self.variant, x, stem_stride * 2 ** (len(self.block_config) - 1))
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = self.norm_layer(train)
        act = get_activation(self.activation)
        dropout = functools.partial(nn.Dropout, self.layer_dropout_rate, deterministic=not train)
        growth = self.scaled_width(self.growth_rate)

        x = x.astype(self.dtype)
        init_features = self.scaled_width(self.num_init_features)
        if self.stem == 'imagenet':
            x = conv7x7_stem(x, init_features, conv, norm, act, names=('conv0', 'norm0'))
        else:
            x = conv(init_features, (3, 3), padding=1, name='conv0')(x)

        for i, num_layers in enumerate(self.block_config):
            for j in range(self.scaled_depth(num_layers)):
                x = DenseLayer(growth, self.bn_size, conv, norm, act, dropout,
                               name=f'denseblock{i + 1}_denselayer{j + 1}')(x)
            if i < len(self.block_config) - 1:
                x = Transition(int(x.shape[-1] * self.compression), conv, norm, act,
                               name=f'transition{i + 1}')(x)

        x = act(norm(name=f'norm{len(self.block_config) + 1}')(x))
        return self.classify(x, train, name='classifier')


CIFAR = dict(stem='cifar', default_image_size=32)
KERAS = dict(bn_epsilon=1.001e-5, bn_momentum=0.99)

# Every registered name and the DenseNet fields it sets: layers per block, growth rate k, stem
# channels. ImageNet: Table 1 (DenseNet-161 is the k=48 net of the released models); CIFAR
# DenseNet-BC: Table 2, (L - 4) / 6 layers per block.
VARIANTS: dict[str, dict[str, Any]] = {
    'densenet121': dict(block_config=(6, 12, 24, 16), growth_rate=32, num_init_features=64),
    'densenet169': dict(block_config=(6, 12, 32, 32), growth_rate=32, num_init_features=64),
    'densenet201': dict(block_config=(6, 12, 48, 32), growth_rate=32, num_init_features=64),
    'densenet161': dict(block_config=(6, 12, 36, 24), growth_rate=48, num_init_features=96),
    # Keras' DenseNet121/169/201: the same layers, BatchNorm epsilon 1.001e-5, momentum 0.99.
    'keras_densenet121': dict(KERAS, block_config=(6, 12, 24, 16), growth_rate=32,
                              num_init_features=64),
    'keras_densenet169': dict(KERAS, block_config=(6, 12, 32, 32), growth_rate=32,
                              num_init_features=64),
    'keras_densenet201': dict(KERAS, block_config=(6, 12, 48, 32), growth_rate=32,
                              num_init_features=64),
    'densenet_bc100_k12': dict(CIFAR, block_config=(16, 16, 16), growth_rate=12,
                               num_init_features=24),
    'densenet_bc190_k40': dict(CIFAR, block_config=(31, 31, 31), growth_rate=40,
                               num_init_features=80),
}
register_variants(DenseNet, VARIANTS)
