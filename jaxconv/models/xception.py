"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions", Fig. 5,
Sec. 3-4).

299x299 input. Entry flow: conv 3x3/2 32 and conv 3x3 64 (unpadded), then three residual blocks
of two 3x3 separable convs (128, 256, 728) and a 3x3/2 max pool, with a strided 1x1 conv + BN
shortcut. Middle flow: eight residual blocks of three 728-wide separable convs, identity
shortcuts. Exit flow: one block of separable convs 728 and 1024, max pool, 1x1 shortcut; then
separable convs 1536 and 2048 (each BN-ReLU), global average pooling, dropout 0.5 (Sec. 4.3) and
the classifier. Every conv is followed by BN (the figure leaves it out); every separable conv has
depth multiplier 1 and no ReLU between its depthwise and pointwise parts; inside blocks the ReLU
comes before each separable conv, and the first block starts without one. 22,855,952 parameters
at 1000 classes (Table 3).

Two layouts of the same weights:
- `xception` is timm's `legacy_xception` (the PyTorch port of Keras' weights): BN epsilon 1e-5 and
  max pools padded by 1 on every side.
- `keras_xception` is Keras' `Xception`: BN epsilon 1e-3 and momentum 0.99, and TF 'SAME' max
  pools, which on an even-sized map pad only the bottom/right (`tf_same_padding`), so the pooled
  windows sit one pixel lower and to the right than in the PyTorch port. 22,910,480 variables with
  BN moving statistics, the figure of Keras' Applications table.

Names: the stem `conv1`, `conv2`, the residual blocks `block1` ... `block12` (timm's numbering,
Keras' block2 ... block13) with `sepconv{i}` and `shortcut`, the exit `conv3`, `conv4`, and `fc`.
"""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax

from jaxconv.models.base import BatchNormKnobs, StochasticDepthKnobs
from jaxconv.models.inception_blocks import SeparableConvNormAct
from jaxconv.models.layers import ConvNormAct, DropPath, ModuleDef, check_min_input
from jaxconv.models.registry import register_variants


class XceptionBlock(nn.Module):
    """[ReLU, separable conv 3x3, BN] per width, then max pool 3x3/2 when strided; added to the
    input, or to a 1x1 conv + BN projection of it when the stride or the width changes."""

    widths: Sequence[int]
    strides: int
    sepconv: ModuleDef
    conv: ModuleDef
    pool_padding: Any
    start_with_relu: bool = True
    drop_path_rate: float = 0.0
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        for i, width in enumerate(self.widths):
            if i > 0 or self.start_with_relu:
                y = nn.relu(y)
            y = self.sepconv(width, 3, name=f'sepconv{i + 1}')(y)
        if self.strides > 1:
            y = nn.max_pool(y, (3, 3), strides=(self.strides,) * 2, padding=self.pool_padding)
        y = DropPath(self.drop_path_rate, self.deterministic)(y)
        if self.strides > 1 or x.shape[-1] != self.widths[-1]:
            x = self.conv(self.widths[-1], 1, strides=self.strides, activation=None,
                          name='shortcut')(x)
        return x + y


class Xception(BatchNormKnobs, StochasticDepthKnobs):
    """Entry flow, `middle_flow_repeats` middle blocks, exit flow (Fig. 5)."""

    middle_flow_repeats: int = 8
    tf_same_padding: bool = False  # Keras' 'SAME' max pools instead of PyTorch's padding of 1.

    min_size: ClassVar[int] = 7  # The two unpadded stem convs need 7x7 (Keras asks for 71).

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, self.min_size)
        norm = self.norm_layer(train)
        conv = functools.partial(ConvNormAct, norm=norm, dtype=self.dtype)
        sepconv = functools.partial(SeparableConvNormAct, norm=norm, dtype=self.dtype)
        pool_padding = 'SAME' if self.tf_same_padding else ((1, 1), (1, 1))
        # (widths, stride, start_with_relu) of each residual block, in order.
        entry = [((128, 128), 2, False), ((256, 256), 2, True), ((728, 728), 2, True)]
        middle = [((728, 728, 728), 1, True)] * self.middle_flow_repeats
        exit_ = [((728, 1024), 2, True)]
        rates = sum(self.drop_path_schedule([len(entry), len(middle), len(exit_)]), [])

        x = x.astype(self.dtype)
        x = conv(32, 3, strides=2, name='conv1')(x)
        x = conv(64, 3, name='conv2')(x)
        for i, ((widths, strides, start_with_relu), rate) in enumerate(
                zip(entry + middle + exit_, rates, strict=True)):
            x = XceptionBlock(widths, strides, sepconv, conv, pool_padding, start_with_relu,
                              drop_path_rate=rate, deterministic=not train,
                              name=f'block{i + 1}')(x)
        x = sepconv(1536, 3, activation=nn.relu, name='conv3')(x)
        x = sepconv(2048, 3, activation=nn.relu, name='conv4')(x)
        return self.classify(x, train, name='fc')


# Every registered name and the fields it sets (the one place a variant is defined).
# Keras' graph has no dropout layer; the paper's 0.5 stays the training default of both layouts.
VARIANTS: dict[str, dict[str, Any]] = {
    'xception': dict(default_image_size=299, dropout_rate=0.5),
    'keras_xception': dict(default_image_size=299, dropout_rate=0.5, bn_epsilon=1e-3,
                           bn_momentum=0.99, tf_same_padding=True),
}
register_variants(Xception, VARIANTS)
