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

from jaxconv.models.layers import ModuleDef, batch_norm, check_min_input, get_activation, pool2d
from jaxconv.models.registry import register_model
from jaxconv.scaling import round_filters, round_repeats

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


class DenseNet(nn.Module):
    """DenseNet-BC; `stem` 'imagenet' (7x7/2 conv-BN-ReLU + max pool) or 'cifar' (one 3x3 conv)."""

    block_config: Sequence[int]
    num_classes: int = 1000
    growth_rate: int = 32
    num_init_features: int = 64
    bn_size: int = 4
    compression: float = 0.5
    stem: str = 'imagenet'
    layer_dropout_rate: float = 0.0  # After each dense layer (0.2 in the paper without augment).
    dropout_rate: float = 0.0  # Before the classifier.
    activation: str = 'relu'
    depth_multiplier: float = 1.0
    width_multiplier: float = 1.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    default_image_size: int = 224  # The training resolution of the recipe; read by configs only.
    variant: str = 'densenet'
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in ('imagenet', 'cifar'):
            raise ValueError(f'unknown stem {self.stem!r}; valid: imagenet, cifar')
        stem_stride = 4 if self.stem == 'imagenet' else 1
        check_min_input(self.variant, x, stem_stride * 2 ** (len(self.block_config) - 1))
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = batch_norm(train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                          dtype=self.dtype, group_size=self.bn_group_size)
        act = get_activation(self.activation)
        dropout = functools.partial(nn.Dropout, self.layer_dropout_rate, deterministic=not train)
        growth = round_filters(self.growth_rate, self.width_multiplier)

        x = x.astype(self.dtype)
        init_features = round_filters(self.num_init_features, self.width_multiplier)
        if self.stem == 'imagenet':
            x = act(norm(name='norm0')(conv(init_features, (7, 7), 2, padding=3, name='conv0')(x)))
            x = pool2d('max', x, window=3, stride=2, padding=((1, 1), (1, 1)))
        else:
            x = conv(init_features, (3, 3), padding=1, name='conv0')(x)

        for i, num_layers in enumerate(self.block_config):
            for j in range(round_repeats(num_layers, self.depth_multiplier)):
                x = DenseLayer(growth, self.bn_size, conv, norm, act, dropout,
                               name=f'denseblock{i + 1}_denselayer{j + 1}')(x)
            if i < len(self.block_config) - 1:
                x = Transition(int(x.shape[-1] * self.compression), conv, norm, act,
                               name=f'transition{i + 1}')(x)

        x = act(norm(name=f'norm{len(self.block_config) + 1}')(x))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)


# name: (layers per block, growth rate k, stem channels). ImageNet: Table 1 (DenseNet-161 is the
# k=48 net of the released models); CIFAR DenseNet-BC: Table 2, (L - 4) / 6 layers per block.
VARIANTS = {
    'densenet121': ((6, 12, 24, 16), 32, 64),
    'densenet169': ((6, 12, 32, 32), 32, 64),
    'densenet201': ((6, 12, 48, 32), 32, 64),
    'densenet161': ((6, 12, 36, 24), 48, 96),
    'densenet_bc100_k12': ((16, 16, 16), 12, 24),
    'densenet_bc190_k40': ((31, 31, 31), 40, 80),
}


def _create(variant: str, **kwargs: Any) -> DenseNet:
    return DenseNet(variant=variant, **kwargs)


for _name, (_blocks, _k, _init) in VARIANTS.items():
    _cifar = dict(stem='cifar', default_image_size=32) if len(_blocks) == 3 else {}
    register_model(functools.partial(_create, _name, block_config=_blocks, growth_rate=_k,
                                     num_init_features=_init, **_cifar), name=_name)
