"""Inception v3 (Szegedy, Vanhoucke, Ioffe, Shlens & Wojna 2016, "Rethinking the Inception
Architecture for Computer Vision", Table 1, Figs. 5-7 and 10, Sec. 4 and 6).

299x299 input; a stem of unpadded 3x3 convs, then 3 x Inception-A (Fig. 5: 5x5 factorised into
3x3s, 35x35), the grid reduction of Fig. 10 (-> 17x17), 4 x Inception-C (Fig. 6: n x n factorised
into 1x7 and 7x1, n = 7), a second grid reduction (-> 8x8), 2 x Inception-E (Fig. 7: expanded
1x3 / 3x1 filter banks), global average pooling, dropout, FC. Every conv is conv-BN-ReLU without
bias (BN epsilon 1e-3). One auxiliary classifier on the 17x17 grid (Sec. 4: avg pool 5x5/3,
1x1 conv 128, 5x5 conv 768, FC), run only in training and sown as `intermediates/aux_logits`.

Layer for layer this is torchvision's `inception_v3` (the layout of the TF-slim release Keras also
follows), names included (Conv2d_1a_3x3, Mixed_5b/branch5x5_2, AuxLogits/fc, ...): 27,161,264
parameters with the aux head at 1000 classes, 23,834,568 without (`aux_logits=False`).
Keras' InceptionV3 (`keras_inceptionv3`) has the same layers, but BatchNorm without a learned
scale, 'same' average pools that leave the padding out of the mean, and no aux head.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import BatchNormKnobs
from jaxconv.models.inception_blocks import avg_pool_3x3
from jaxconv.models.layers import ConvNormAct, ModuleDef, check_min_input, pool2d
from jaxconv.models.registry import register_variants


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """The 3x3/1 average pool of the pooling branches; zero padding counts, as in torchvision.
    Keras' 'same' pooling leaves it out (`inception_blocks.avg_pool_3x3`)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


class InceptionA(nn.Module):
    """Fig. 5 at 35x35: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    pool_features: int
    conv: ModuleDef
    avg_pool: Callable[[jax.Array], jax.Array] = _avg_pool_3x3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b1 = conv(64, 1, name='branch1x1')(x)
        b5 = conv(48, 1, name='branch5x5_1')(x)
        b5 = conv(64, 5, padding=2, name='branch5x5_2')(b5)
        b3 = conv(64, 1, name='branch3x3dbl_1')(x)
        b3 = conv(96, 3, padding=1, name='branch3x3dbl_2')(b3)
        b3 = conv(96, 3, padding=1, name='branch3x3dbl_3')(b3)
        bp = conv(self.pool_features, 1, name='branch_pool')(self.avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Fig. 10 grid reduction 35 -> 17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b3 = conv(384, 3, strides=2, name='branch3x3')(x)
        bd = conv(64, 1, name='branch3x3dbl_1')(x)
        bd = conv(96, 3, padding=1, name='branch3x3dbl_2')(bd)
        bd = conv(96, 3, strides=2, name='branch3x3dbl_3')(bd)
        return jnp.concatenate([b3, bd, pool2d('max', x, window=3, stride=2)], axis=-1)


class InceptionC(nn.Module):
    """Fig. 6 at 17x17 with n = 7: the 7x7 convolutions factorised into 1x7 and 7x1."""

    channels_7x7: int
    conv: ModuleDef
    avg_pool: Callable[[jax.Array], jax.Array] = _avg_pool_3x3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, c7 = self.conv, self.channels_7x7
        row, col = ((0, 0), (3, 3)), ((3, 3), (0, 0))  # Padding of a 1x7 and of a 7x1 conv.
        b1 = conv(192, 1, name='branch1x1')(x)
        b7 = conv(c7, 1, name='branch7x7_1')(x)
        b7 = conv(c7, (1, 7), padding=row, name='branch7x7_2')(b7)
        b7 = conv(192, (7, 1), padding=col, name='branch7x7_3')(b7)
        bd = conv(c7, 1, name='branch7x7dbl_1')(x)
        bd = conv(c7, (7, 1), padding=col, name='branch7x7dbl_2')(bd)
        bd = conv(c7, (1, 7), padding=row, name='branch7x7dbl_3')(bd)
        bd = conv(c7, (7, 1), padding=col, name='branch7x7dbl_4')(bd)
        bd = conv(192, (1, 7), padding=row, name='branch7x7dbl_5')(bd)
        bp = conv(192, 1, name='branch_pool')(self.avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool 3x3/2."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        b3 = conv(192, 1, name='branch3x3_1')(x)
        b3 = conv(320, 3, strides=2, name='branch3x3_2')(b3)
        b7 = conv(192, 1, name='branch7x7x3_1')(x)
        b7 = conv(192, (1, 7), padding=((0, 0), (3, 3)), name='branch7x7x3_2')(b7)
        b7 = conv(192, (7, 1), padding=((3, 3), (0, 0)), name='branch7x7x3_3')(b7)
        b7 = conv(192, 3, strides=2, name='branch7x7x3_4')(b7)
        return jnp.concatenate([b3, b7, pool2d('max', x, window=3, stride=2)], axis=-1)


class InceptionE(nn.Module):
    """Fig. 7 at 8x8: the 3x3 outputs split into parallel 1x3 and 3x1 banks, concatenated."""

    conv: ModuleDef
    avg_pool: Callable[[jax.Array], jax.Array] = _avg_pool_3x3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        row, col = ((0, 0), (1, 1)), ((1, 1), (0, 0))
        b1 = conv(320, 1, name='branch1x1')(x)
        b3 = conv(384, 1, name='branch3x3_1')(x)
        b3 = jnp.concatenate([conv(384, (1, 3), padding=row, name='branch3x3_2a')(b3),
                              conv(384, (3, 1), padding=col, name='branch3x3_2b')(b3)], axis=-1)
        bd = conv(448, 1, name='branch3x3dbl_1')(x)
        bd = conv(384, 3, padding=1, name='branch3x3dbl_2')(bd)
        bd = jnp.concatenate([conv(384, (1, 3), padding=row, name='branch3x3dbl_3a')(bd),
                              conv(384, (3, 1), padding=col, name='branch3x3dbl_3b')(bd)], axis=-1)
        bp = conv(192, 1, name='branch_pool')(self.avg_pool(x))
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nn.Module):
    """The auxiliary classifier on the 17x17x768 grid (Sec. 4 and Fig. 8)."""

    num_classes: int
    conv: ModuleDef
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = pool2d('avg', x, window=5, stride=3)  # 17x17 -> 5x5.
        x = self.conv(128, 1, name='conv0')(x)
        x = self.conv(768, 5, name='conv1')(x)  # 5x5 -> 1x1.
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)


BLOCKS = {'A': InceptionA, 'B': InceptionB, 'C': InceptionC, 'D': InceptionD, 'E': InceptionE}
MIN_SIZE = 75  # The unpadded stem and reductions leave 1x1 at 75x75.
MIN_SIZE_AUX = 299  # The aux head's 5x5/3 pool and 5x5 conv need the 17x17 grid.


class InceptionV3(BatchNormKnobs):
    """Stem, the Mixed_* blocks listed in `blocks`, the aux head after `aux_after`, FC head."""

    blocks: Sequence[tuple[str, str, int | None]]  # (name, kind, pool_features or channels_7x7).
    aux_logits: bool = True
    aux_after: str = 'Mixed_6e'
    bn_scale: bool = True  # False: BatchNorm without a learned scale (Keras' InceptionV3).
    pool_count_include_pad: bool = True  # False: Keras' 'same' average pooling.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        with_aux = self.aux_logits and train
        check_min_input(self.variant if not with_aux else
                        f'{self.variant} with its aux head (training; aux_logits=False lifts this)',
                        x, MIN_SIZE_AUX if with_aux else MIN_SIZE)
        norm = self.norm_layer(train)
        if not self.bn_scale:
            norm = functools.partial(norm, use_scale=False)
        conv = functools.partial(ConvNormAct, norm=norm, dtype=self.dtype)
        avg_pool = _avg_pool_3x3 if self.pool_count_include_pad else avg_pool_3x3
        x = x.astype(self.dtype)
        x = conv(32, 3, strides=2, name='Conv2d_1a_3x3')(x)
        x = conv(32, 3, name='Conv2d_2a_3x3')(x)
        x = conv(64, 3, padding=1, name='Conv2d_2b_3x3')(x)
        x = pool2d('max', x, window=3, stride=2)
        x = conv(80, 1, name='Conv2d_3b_1x1')(x)
        x = conv(192, 3, name='Conv2d_4a_3x3')(x)
        x = pool2d('max', x, window=3, stride=2)
        for name, kind, width in self.blocks:
            args = () if width is None else (width,)
            pooling = dict(avg_pool=avg_pool) if kind in 'ACE' else {}
            x = BLOCKS[kind](*args, conv=conv, name=name, **pooling)(x)
            if with_aux and name == self.aux_after:
                aux = InceptionAux(self.num_classes, conv, self.dtype, name='AuxLogits')(x)
                self.sow('intermediates', 'aux_logits', aux)
        return self.classify(x, train, name='fc')


# --- Variant table: the Mixed_* blocks of Table 1 (torchvision / TF-slim names and widths). ---

INCEPTION_V3_BLOCKS = (  # A: pool_features; C: channels_7x7 (n x n = 7x7 factorised).
    ('Mixed_5b', 'A', 32),
    ('Mixed_5c', 'A', 64),
    ('Mixed_5d', 'A', 64),
    ('Mixed_6a', 'B', None),
    ('Mixed_6b', 'C', 128),
    ('Mixed_6c', 'C', 160),
    ('Mixed_6d', 'C', 160),
    ('Mixed_6e', 'C', 192),
    ('Mixed_7a', 'D', None),
    ('Mixed_7b', 'E', None),
    ('Mixed_7c', 'E', None),
)


register_variants(InceptionV3, {
    # torchvision inception_v3: BasicConv2d's BatchNorm eps 0.001, dropout 0.5, 299x299.
    'inception_v3': dict(blocks=INCEPTION_V3_BLOCKS, bn_epsilon=1e-3, dropout_rate=0.5,
                         default_image_size=299),
    # Keras' InceptionV3: no aux head and no dropout in its graph, BatchNorm without a scale
    # (epsilon 1e-3, momentum 0.99), average pools that leave the padding out.
    'keras_inceptionv3': dict(blocks=INCEPTION_V3_BLOCKS, aux_logits=False, dropout_rate=0.0,
                              bn_scale=False, pool_count_include_pad=False, bn_epsilon=1e-3,
                              bn_momentum=0.99, default_image_size=299),
})
