"""Blocks shared by Xception, BN-Inception, Inception-v4 and Inception-ResNet.

- `SeparableConvNormAct`: a depthwise-separable convolution (Chollet 2017, Sec. 2: a depthwise
  spatial conv then a 1x1 pointwise conv, no activation between), BatchNorm, optional activation.
- `ReductionA`: the 35x35 -> 17x17 grid reduction of Szegedy et al. 2016 ("Inception-v4,
  Inception-ResNet and the Impact of Residual Connections on Learning", Fig. 7), shared by
  Inception-v4 and both Inception-ResNets with the filter counts k, l, m, n of its Table 1.
- `avg_pool_3x3`: the stride-1 average pool of the pooling branches.
- `concat`: joins branches on the channel axis.

Stride-1 convolutions in these families pad to keep the size ('SAME', symmetric for odd kernels);
the ones the papers mark "V" are unpadded ('VALID').
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.layers import ModuleDef, conv_general_dilated, pool2d


def concat(branches: Sequence[jax.Array]) -> jax.Array:
    return jnp.concatenate(branches, axis=-1)


def avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3/1 average pool that leaves padding out of the mean: timm's `count_include_pad=False`,
    Keras' and TF's 'same' average pooling (torchvision's Inception v3 counts it; see inception.py).
    """
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                       count_include_pad=False)


class SeparableConvNormAct(nn.Module):
    """Depthwise conv (`depth_multiplier` filters per input channel), 1x1 pointwise conv, BatchNorm,
    optional activation. Children `depthwise`, `pointwise`, `bn`; no biases (BN follows).

    As Keras' SeparableConv2D and TF-slim's separable_conv2d: nothing between the two convolutions
    (Chollet 2017, Sec. 4.7, found an intermediate ReLU harmful).
    """

    features: int
    kernel_size: int
    strides: int = 1
    padding: Any = 'SAME'
    depth_multiplier: int = 1
    norm: ModuleDef | None = None
    activation: Callable[[jax.Array], jax.Array] | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = (self.kernel_size, self.kernel_size)
        x = nn.Conv(channels * self.depth_multiplier, kernel, strides=(self.strides,) * 2,
                    padding=self.padding, feature_group_count=channels, use_bias=False,
                    conv_general_dilated=conv_general_dilated, dtype=self.dtype,
                    name='depthwise')(x)
        x = nn.Conv(self.features, (1, 1), use_bias=self.norm is None, dtype=self.dtype,
                    name='pointwise')(x)
        if self.norm is not None:
            x = self.norm(name='bn')(x)
        return x if self.activation is None else self.activation(x)


class ReductionA(nn.Module):
    """Fig. 7, 35x35 -> 17x17: max pool 3x3/2 | n 3x3/2 | k 1x1 -> l 3x3 -> m 3x3/2 (strided ones
    unpadded). Table 1: (k, l, m, n) = (192, 224, 256, 384) in Inception-v4, (192, 192, 256, 384)
    in Inception-ResNet-v1 and (256, 256, 384, 384) in Inception-ResNet-v2. Concatenated as the
    released TF-slim models (and timm) do: the convolutions first, the pool last."""

    k: int
    l: int  # noqa: E741  (Table 1's name)
    m: int
    n: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b0 = conv(self.n, 3, strides=2, padding='VALID', name='branch0')(x)
        b1 = conv(self.k, 1, name='branch1_0')(x)
        b1 = conv(self.l, 3, name='branch1_1')(b1)
        b1 = conv(self.m, 3, strides=2, padding='VALID', name='branch1_2')(b1)
        return concat([b0, b1, pool2d('max', x, window=3, stride=2)])
