"""BN-Inception, a.k.a. Inception v2 (Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep
Network Training by Reducing Internal Covariate Shift", Sec. 4.2 and the appendix's Fig. 5).

GoogLeNet with BatchNorm after every convolution (no conv biases) and the appendix's changes:
each 5x5 conv becomes two 3x3 convs ("double #3x3"), a third 28x28 module (3c), average or max
pooling inside the modules as the table says, and no pooling layers between modules: 3c and 4e
reduce the grid themselves with stride-2 convs and a max pool passed through. The first layer is
a separable 7x7/2 conv with depth multiplier 8 (the appendix; `separable_stem=False` gives a
plain 7x7 conv, the first layer of the Caffe port less its bias). No auxiliary heads and no
dropout (Sec. 4.2.1 removes it). 11,278,528 parameters at 1000 classes, counted from the table.

Padding is TF's 'SAME' throughout, as in the authors' TensorFlow reimplementation (TF-slim
`inception_v2`), so 224 -> 112 -> 56 -> 28 -> 14 -> 7 and any input size works. The filter
counts are the table's, as in the Caffe port of the paper's network (576 / 608 / 1056 channels
around 4c-4e; TF-slim's `inception_v2` departs from the table there).
"""

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from jaxconv.models.base import BatchNormKnobs
from jaxconv.models.inception_blocks import SeparableConvNormAct, avg_pool_3x3, concat
from jaxconv.models.layers import ConvNormAct, ModuleDef, pool2d
from jaxconv.models.registry import register_variants


class ModuleSpec(NamedTuple):
    """One row of Fig. 5: the filter counts of an Inception module (0: branch absent)."""

    name: str
    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    double3x3_reduce: int
    double3x3: int
    pool: str  # 'avg' or 'max'.
    pool_proj: int  # 0: the pooled input passes through ("max + pass through").
    strides: int = 1


# Fig. 5 (Ioffe & Szegedy 2015): the modules, in order.
MODULES = (
    ModuleSpec('inception_3a', 64, 64, 64, 64, 96, 'avg', 32),
    ModuleSpec('inception_3b', 64, 64, 96, 64, 96, 'avg', 64),
    ModuleSpec('inception_3c', 0, 128, 160, 64, 96, 'max', 0, strides=2),
    ModuleSpec('inception_4a', 224, 64, 96, 96, 128, 'avg', 128),
    ModuleSpec('inception_4b', 192, 96, 128, 96, 128, 'avg', 128),
    ModuleSpec('inception_4c', 160, 128, 160, 128, 160, 'avg', 128),
    ModuleSpec('inception_4d', 96, 128, 192, 160, 192, 'avg', 128),
    ModuleSpec('inception_4e', 0, 128, 192, 192, 256, 'max', 0, strides=2),
    ModuleSpec('inception_5a', 352, 192, 320, 160, 224, 'avg', 128),
    ModuleSpec('inception_5b', 352, 192, 320, 192, 224, 'max', 128),
)


class BNInceptionModule(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | 3x3 pool (-> 1x1 projection), concatenated; in the
    strided modules the last conv of each 3x3 branch and the pool have stride 2."""

    spec: ModuleSpec
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, spec, stride = self.conv, self.spec, self.spec.strides
        branches = []
        if spec.ch1x1:
            branches.append(conv(spec.ch1x1, 1, name='branch1x1')(x))
        b3 = conv(spec.ch3x3_reduce, 1, name='branch3x3_reduce')(x)
        branches.append(conv(spec.ch3x3, 3, strides=stride, name='branch3x3')(b3))
        bd = conv(spec.double3x3_reduce, 1, name='double3x3_reduce')(x)
        bd = conv(spec.double3x3, 3, name='double3x3_1')(bd)
        branches.append(conv(spec.double3x3, 3, strides=stride, name='double3x3_2')(bd))
        if spec.pool == 'avg':  # Only in stride-1 modules; TF leaves the padding out of the mean.
            pooled = avg_pool_3x3(x)
        else:
            pooled = pool2d('max', x, window=3, stride=stride, padding='SAME')
        if spec.pool_proj:
            pooled = conv(spec.pool_proj, 1, name='pool_proj')(pooled)
        branches.append(pooled)
        return concat(branches)


class BNInception(BatchNormKnobs):
    """Stem (separable 7x7/2, max pool, 1x1 64, 3x3 192, max pool), the modules, classifier."""

    blocks: Sequence[ModuleSpec] = MODULES
    separable_stem: bool = True  # The appendix's depthwise-separable first layer.
    stem_depth_multiplier: int = 8  # Of that separable conv.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = functools.partial(ConvNormAct, norm=self.norm_layer(train), padding='SAME',
                                 dtype=self.dtype)
        x = x.astype(self.dtype)
        if self.separable_stem:
            x = SeparableConvNormAct(64, 7, strides=2, depth_multiplier=self.stem_depth_multiplier,
                                     norm=self.norm_layer(train), activation=nn.relu,
                                     dtype=self.dtype, name='conv1')(x)
        else:
            x = conv(64, 7, strides=2, name='conv1')(x)
        x = pool2d('max', x, window=3, stride=2, padding='SAME')
        x = conv(64, 1, name='conv2_reduce')(x)
        x = conv(192, 3, name='conv2')(x)
        x = pool2d('max', x, window=3, stride=2, padding='SAME')
        for spec in self.blocks:
            x = BNInceptionModule(spec, conv, name=spec.name)(x)
        return self.classify(x, train, name='fc')


# Every registered name and the fields it sets (the one place a variant is defined).
VARIANTS: dict[str, dict[str, Any]] = {
    'bn_inception': dict(default_image_size=224, bn_epsilon=1e-3),  # TF-slim's epsilon.
}
register_variants(BNInception, VARIANTS)
