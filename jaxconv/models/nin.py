"""Network in Network (Lin, Chen & Yan 2014, "Network In Network", Sec. 3 and 4.2).

An mlpconv layer is a kxk convolution followed by two 1x1 convolutions (the "micro network",
ReLU after each), and the classifier is global average pooling over one map per class (Sec. 3.2):
the last 1x1 convolution has `num_classes` filters and no FC layer follows.

The CIFAR-10 network of Sec. 4.2 is three mlpconv layers with pooling and dropout 0.5 between
them; the paper leaves the widths to its released model, which we follow (the authors' Caffe
definition, github.com/mavenlin gist e56253735ef32c3c296d): 192-160-96 5x5, max pool 3x3/2,
192-192-192 5x5, average pool 3x3/2, 192-192-classes 3x3, global average pool; ceil-mode pooling
(Caffe's), so 32 -> 16 -> 8. Parameters at 10 classes, layer by layer:
14,592 + 30,880 + 15,456 + 460,992 + 37,056 + 37,056 + 331,968 + 37,056 + 1,930 = 966,986.

As in the paper (Eq. 2) and the released model, the class maps pass a ReLU before the pooling.
Without BatchNorm that makes large learning rates fatal: once every class map is negative
everywhere the logits are all 0 and no gradient flows (on digits, a peak SGD rate of 0.1 does it).
"""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import ConvNet
from jaxconv.models.layers import check_min_input, pool2d_ceil
from jaxconv.models.registry import register_variants

# He et al. 2015 ("Delving Deep into Rectifiers", Eq. 10): std sqrt(2 / fan_in). Nine ReLU layers
# without BatchNorm at flax's default LeCun scale halve the signal's variance at each layer, so the
# class maps start near zero and SGD crawls off chance (the authors hand-tuned Gaussian scales).
KERNEL_INIT = nn.initializers.he_normal()


class MlpConv(NamedTuple):
    """A kxk convolution and two 1x1 ones; a width of None is `num_classes` (the last layer)."""

    kernel: int
    widths: tuple[int | None, int | None, int | None]
    pool: str  # 'max' or 'avg' (3x3/2, ceil mode, then dropout) or 'global' (the classifier).


class NiN(ConvNet):
    """Stacked mlpconv layers ending in one map per class and global average pooling.

    `dropout_rate` is the dropout after each pooling (0.5).
    """

    layers: Sequence[MlpConv]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        num_pools = sum(layer.pool != 'global' for layer in self.layers)
        # Ceil-mode 3x3/2 pooling needs 2 pixels and takes 2**k to 2**(k-1): 2**pools is the least.
        check_min_input(self.variant, x, 2 ** num_pools)
        x = x.astype(self.dtype)
        conv_index = 0
        for i, layer in enumerate(self.layers, start=1):
            for j, width in enumerate(layer.widths):
                kernel = layer.kernel if j == 0 else 1
                name = f'conv{i}' if j == 0 else f'cccp{conv_index + j}'  # The Caffe names.
                x = nn.Conv(width or self.num_classes, (kernel, kernel), padding=kernel // 2,
                            kernel_init=KERNEL_INIT, dtype=self.dtype, name=name)(x)
                x = nn.relu(x)
            conv_index += len(layer.widths) - 1
            if layer.pool == 'global':
                return jnp.mean(x, axis=(1, 2))  # Global average pooling: the class scores.
            x = pool2d_ceil(layer.pool, x, window=3, stride=2)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        raise ValueError('a NiN needs a last mlpconv layer with pool="global"')


# --- Variant table: the CIFAR-10 network of Sec. 4.2 (the authors' released definition). -----

NIN_CIFAR10 = (
    MlpConv(5, (192, 160, 96), 'max'),
    MlpConv(5, (192, 192, 192), 'avg'),
    MlpConv(3, (192, 192, None), 'global'),
)


register_variants(NiN, {'nin_cifar10': dict(layers=NIN_CIFAR10, dropout_rate=0.5,
                                            default_image_size=32)})
