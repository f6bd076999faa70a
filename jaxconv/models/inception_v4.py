"""Inception-v4 (Szegedy, Ioffe, Vanhoucke & Alemi 2016, "Inception-v4, Inception-ResNet and the
Impact of Residual Connections on Learning", Fig. 9 and Figs. 3-8).

299x299 input. The stem of Fig. 3 (35x35x384), 4 x Inception-A (Fig. 4), Reduction-A (Fig. 7,
k=192, l=224, m=256, n=384 from Table 1; -> 17x17x1024), 7 x Inception-B (Fig. 5), Reduction-B
(Fig. 8; -> 8x8x1536), 3 x Inception-C (Fig. 6), global average pooling, dropout (keep 0.8) and
the classifier. Every conv is conv-BN-ReLU without bias, BN epsilon 1e-3; convs the figures mark
"V" are unpadded, the others keep the size.

Layer for layer this is the released TF-slim model as ported by timm (`inception_v4`,
42,679,816 parameters at 1000 classes), whose logits it reproduces under timm's weights. The order
of each factorised pair is the release's (Inception-B's five-conv tower starts with 7x1,
Inception-C's with 3x1), which parameter and multiply-add counts cannot tell from the reverse.
The release's auxiliary head (TF-slim only) is left out, as in the paper's Fig. 9 and timm.

Names follow TF-slim (Conv2d_1a_3x3 ... Mixed_3a, Mixed_5b ... Mixed_7d) at the top and timm
inside the blocks (branch0, branch1_0, ...).
"""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax

from jaxconv.models.base import BatchNormKnobs
from jaxconv.models.inception_blocks import ReductionA, avg_pool_3x3, concat
from jaxconv.models.layers import ConvNormAct, ModuleDef, check_min_input, pool2d
from jaxconv.models.registry import register_variants

V = 'VALID'  # The figures' "V": no padding.


class PoolConvSplit(nn.Module):
    """Fig. 3's strided splits: max pool 3x3/2 and an unpadded conv 3x3/2, concatenated (the pool
    first in Mixed_3a, last in Mixed_5a, as released)."""

    features: int
    conv: ModuleDef
    pool_first: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = pool2d('max', x, window=3, stride=2)
        y = self.conv(self.features, 3, strides=2, padding=V, name='conv')(x)
        return concat([pooled, y] if self.pool_first else [y, pooled])


class Mixed4a(nn.Module):
    """Fig. 3's middle split: 1x1 64 -> 3x3 96 | 1x1 64 -> 1x7 64 -> 7x1 64 -> 3x3 96 (the 3x3s
    unpadded; 73x73x160 -> 71x71x192)."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b0 = conv(64, 1, name='branch0_0')(x)
        b0 = conv(96, 3, padding=V, name='branch0_1')(b0)
        b1 = conv(64, 1, name='branch1_0')(x)
        b1 = conv(64, (1, 7), name='branch1_1')(b1)
        b1 = conv(64, (7, 1), name='branch1_2')(b1)
        b1 = conv(96, 3, padding=V, name='branch1_3')(b1)
        return concat([b0, b1])


class InceptionA(nn.Module):
    """Fig. 4 at 35x35: 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 96."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b0 = conv(96, 1, name='branch0')(x)
        b1 = conv(64, 1, name='branch1_0')(x)
        b1 = conv(96, 3, name='branch1_1')(b1)
        b2 = conv(64, 1, name='branch2_0')(x)
        b2 = conv(96, 3, name='branch2_1')(b2)
        b2 = conv(96, 3, name='branch2_2')(b2)
        b3 = conv(96, 1, name='branch3')(avg_pool_3x3(x))
        return concat([b0, b1, b2, b3])


class InceptionB(nn.Module):
    """Fig. 5 at 17x17: 1x1 384 | 1x1 192 -> 1x7 224 -> 7x1 256 |
    1x1 192 -> 7x1 192 -> 1x7 224 -> 7x1 224 -> 1x7 256 | avg -> 1x1 128."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b0 = conv(384, 1, name='branch0')(x)
        b1 = conv(192, 1, name='branch1_0')(x)
        b1 = conv(224, (1, 7), name='branch1_1')(b1)
        b1 = conv(256, (7, 1), name='branch1_2')(b1)
        b2 = conv(192, 1, name='branch2_0')(x)
        b2 = conv(192, (7, 1), name='branch2_1')(b2)
        b2 = conv(224, (1, 7), name='branch2_2')(b2)
        b2 = conv(224, (7, 1), name='branch2_3')(b2)
        b2 = conv(256, (1, 7), name='branch2_4')(b2)
        b3 = conv(128, 1, name='branch3')(avg_pool_3x3(x))
        return concat([b0, b1, b2, b3])


class ReductionB(nn.Module):
    """Fig. 8, 17x17 -> 8x8: 1x1 192 -> 3x3/2 192 | 1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3/2 320 |
    max pool 3x3/2."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b0 = conv(192, 1, name='branch0_0')(x)
        b0 = conv(192, 3, strides=2, padding=V, name='branch0_1')(b0)
        b1 = conv(256, 1, name='branch1_0')(x)
        b1 = conv(256, (1, 7), name='branch1_1')(b1)
        b1 = conv(320, (7, 1), name='branch1_2')(b1)
        b1 = conv(320, 3, strides=2, padding=V, name='branch1_3')(b1)
        return concat([b0, b1, pool2d('max', x, window=3, stride=2)])


class InceptionC(nn.Module):
    """Fig. 6 at 8x8: 1x1 256 | 1x1 384 -> (1x3 256, 3x1 256) |
    1x1 384 -> 3x1 448 -> 1x3 512 -> (1x3 256, 3x1 256) | avg -> 1x1 256."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b0 = conv(256, 1, name='branch0')(x)
        b1 = conv(384, 1, name='branch1_0')(x)
        b1 = concat([conv(256, (1, 3), name='branch1_1a')(b1),
                     conv(256, (3, 1), name='branch1_1b')(b1)])
        b2 = conv(384, 1, name='branch2_0')(x)
        b2 = conv(448, (3, 1), name='branch2_1')(b2)
        b2 = conv(512, (1, 3), name='branch2_2')(b2)
        b2 = concat([conv(256, (1, 3), name='branch2_3a')(b2),
                     conv(256, (3, 1), name='branch2_3b')(b2)])
        b3 = conv(256, 1, name='branch3')(avg_pool_3x3(x))
        return concat([b0, b1, b2, b3])


def block_names(prefix: str, count: int) -> list[str]:
    """TF-slim's names of a run of blocks after its reduction: Mixed_5b, Mixed_5c, ..."""
    return [f'{prefix}{chr(ord("b") + i)}' for i in range(count)]


class InceptionV4(BatchNormKnobs):
    """Stem, `stage_repeats` Inception-A/B/C blocks with the two reductions between, classifier."""

    stage_repeats: Sequence[int] = (4, 7, 3)  # Fig. 9: 4 x A, 7 x B, 3 x C.

    min_size: ClassVar[int] = 75  # The unpadded stem and reductions leave 1x1 at 75x75.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, self.min_size)
        conv = functools.partial(ConvNormAct, norm=self.norm_layer(train), padding='SAME',
                                 dtype=self.dtype)
        repeats_a, repeats_b, repeats_c = self.stage_repeats
        x = x.astype(self.dtype)
        # The stem (Fig. 3): 299x299x3 -> 35x35x384.
        x = conv(32, 3, strides=2, padding=V, name='Conv2d_1a_3x3')(x)
        x = conv(32, 3, padding=V, name='Conv2d_2a_3x3')(x)
        x = conv(64, 3, name='Conv2d_2b_3x3')(x)
        x = PoolConvSplit(96, conv, pool_first=True, name='Mixed_3a')(x)
        x = Mixed4a(conv, name='Mixed_4a')(x)
        x = PoolConvSplit(192, conv, pool_first=False, name='Mixed_5a')(x)
        for name in block_names('Mixed_5', repeats_a):
            x = InceptionA(conv, name=name)(x)
        x = ReductionA(192, 224, 256, 384, conv, name='Mixed_6a')(x)
        for name in block_names('Mixed_6', repeats_b):
            x = InceptionB(conv, name=name)(x)
        x = ReductionB(conv, name='Mixed_7a')(x)
        for name in block_names('Mixed_7', repeats_c):
            x = InceptionC(conv, name=name)(x)
        return self.classify(x, train, name='fc')


# Every registered name and the fields it sets (the one place a variant is defined).
VARIANTS: dict[str, dict[str, Any]] = {
    'inception_v4': dict(default_image_size=299, dropout_rate=0.2, bn_epsilon=1e-3),
}
register_variants(InceptionV4, VARIANTS)
