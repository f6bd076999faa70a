"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", Table 1 and Sec. 2.1) with torchvision's BatchNorm variants, and MiniVGG.

Table 1's configurations A, A-LRN, B, C, D, E: 3x3 convolutions with padding 1 (C adds three 1x1
convolutions), max pooling 2x2/2 after each of the five stages, then FC 4096 - FC 4096 - FC classes
with dropout 0.5 after the two hidden FC layers; 224x224 input. A-LRN puts the LRN of
Krizhevsky et al. after the first layer. The `_bn` variants add BatchNorm between each conv and
its ReLU and keep the conv bias, as torchvision's `vgg*_bn` do. Submodules are named by their
torchvision index (`features_0`, `features_2`, ..., `classifier_6`; BatchNorm shifts the indices
exactly as in torchvision), so checkpoints map key for key.

MiniVGG is the 32x32 network of the course table (Rosebrock, "Deep Learning for Computer Vision
with Python", MiniVGGNet): [CONV-ReLU-BN]x2 - POOL - DROPOUT 0.25 for 32 and then 64 filters,
FC 512 - ReLU - BN - DROPOUT 0.5, FC classes.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.layers import batch_norm, check_min_input, local_response_norm, pool2d
from jaxconv.models.registry import register_model

Layer = int | tuple[int, int] | str  # conv3-N as N, conv1-N as (N, 1), 'M' max pool, 'LRN'.


class VGG(nn.Module):
    """A VGG configuration (`layers`, one of Table 1's columns) with the three-FC classifier."""

    layers: Sequence[Layer]
    num_classes: int = 1000
    batch_norm: bool = False
    dropout: float = 0.5
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    dtype: Any = jnp.float32

    default_image_size: ClassVar[int] = 224

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        num_pools = sum(layer == 'M' for layer in self.layers)
        check_min_input(type(self).__name__, x, 2 ** num_pools)
        norm = batch_norm(train, dtype=self.dtype,
                          group_size=self.bn_group_size)
        x = x.astype(self.dtype)
        index = 0  # torchvision's position in its `features` Sequential (ReLU and pools count).
        for layer in self.layers:
            if layer == 'M':
                x = pool2d('max', x, window=2, stride=2)
                index += 1
            elif layer == 'LRN':
                x = local_response_norm(x)
                index += 1
            else:
                features, kernel = layer if isinstance(layer, tuple) else (layer, 3)
                x = nn.Conv(features, (kernel, kernel), padding=kernel // 2, dtype=self.dtype,
                            name=f'features_{index}')(x)
                if self.batch_norm:
                    x = norm(name=f'features_{index + 1}')(x)
                    index += 1
                x = nn.relu(x)
                index += 2
        x = x.reshape(x.shape[0], -1)  # 7x7x512 = 25088 features at 224x224.
        for i in (0, 3):
            x = nn.relu(nn.Dense(4096, dtype=self.dtype, name=f'classifier_{i}')(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier_6')(x)


class MiniVGG(nn.Module):
    """MiniVGGNet: two VGG stages of CONV-ReLU-BN pairs and a BatchNorm'd FC layer, for 32x32."""

    num_classes: int = 10
    filters: Sequence[int] = (32, 64)
    hidden: int = 512
    conv_dropout: float = 0.25
    fc_dropout: float = 0.5
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    dtype: Any = jnp.float32

    default_image_size: ClassVar[int] = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input('minivgg', x, 2 ** len(self.filters))
        norm = batch_norm(train, dtype=self.dtype,
                          group_size=self.bn_group_size)
        x = x.astype(self.dtype)
        for stage, features in enumerate(self.filters, start=1):
            for j in (1, 2):
                x = nn.Conv(features, (3, 3), padding=1, dtype=self.dtype,
                            name=f'block{stage}_conv{j}')(x)
                x = norm(name=f'block{stage}_bn{j}')(nn.relu(x))  # The course's CONV-ACT-BN order.
            x = pool2d('max', x, window=2, stride=2)
            x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
        x = x.reshape(x.shape[0], -1)  # 8x8x64 = 4096 features at 32x32.
        x = norm(name='fc1_bn')(nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x)))
        x = nn.Dropout(self.fc_dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='fc2')(x)


# --- Variant table: Simonyan & Zisserman 2015, Table 1 (columns A to E). ---------------------

VGG_LAYERS: dict[str, tuple[Layer, ...]] = {
    'A': (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'A-LRN': (64, 'LRN', 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'B': (64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'C': (64, 64, 'M', 128, 128, 'M', 256, 256, (256, 1), 'M', 512, 512, (512, 1), 'M',
          512, 512, (512, 1), 'M'),
    'D': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'),
    'E': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M',
          512, 512, 512, 512, 'M'),
}


def _vgg(config: str, bn: bool = False, **overrides: Any) -> VGG:
    return VGG(**{'layers': VGG_LAYERS[config], 'batch_norm': bn, **overrides})


@register_model
def vgg11(**kwargs: Any) -> nn.Module:
    return _vgg('A', **kwargs)


@register_model
def vgg11_lrn(**kwargs: Any) -> nn.Module:
    return _vgg('A-LRN', **kwargs)


@register_model
def vgg13(**kwargs: Any) -> nn.Module:
    return _vgg('B', **kwargs)


@register_model
def vgg16_c(**kwargs: Any) -> nn.Module:
    return _vgg('C', **kwargs)


@register_model
def vgg16(**kwargs: Any) -> nn.Module:
    return _vgg('D', **kwargs)


@register_model
def vgg19(**kwargs: Any) -> nn.Module:
    return _vgg('E', **kwargs)


@register_model
def vgg11_bn(**kwargs: Any) -> nn.Module:
    return _vgg('A', bn=True, **kwargs)


@register_model
def vgg13_bn(**kwargs: Any) -> nn.Module:
    return _vgg('B', bn=True, **kwargs)


@register_model
def vgg16_bn(**kwargs: Any) -> nn.Module:
    return _vgg('D', bn=True, **kwargs)


@register_model
def vgg19_bn(**kwargs: Any) -> nn.Module:
    return _vgg('E', bn=True, **kwargs)


@register_model
def minivgg(**kwargs: Any) -> nn.Module:
    return MiniVGG(**kwargs)
