"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions", Table 1,
Fig. 2(b), Fig. 3 and Sec. 5).

Stem (conv 7x7/2 64, max pool 3x3/2, conv 1x1 64, conv 3x3 192, max pool 3x3/2), the nine
Inception modules of Table 1 (1x1, 1x1 -> 3x3, 1x1 -> "5x5", max pool 3x3/1 -> 1x1 projection,
concatenated), max pools 3x3/2 after 3b and 4e, global average pooling, dropout 0.4, a linear
classifier; pooling rounds up (Caffe's ceil mode), so 224 -> 112 -> 56 -> 28 -> 14 -> 7.
Two auxiliary classifiers on the outputs of 4a and 4d (Sec. 5): average pool 5x5/3 (4x4 maps at
224x224), 1x1 conv 128, FC 1024, dropout 0.7, FC classes. They run only in training and are
sown as `intermediates/aux_logits`; the trainer adds `train.aux_loss_weight` (0.3) times each.

Defaults follow torchvision's `googlenet` (a port of the TF model), so that its parameter count
(13,004,888 with aux heads at 1000 classes) and weights carry over: every conv is conv-BN-ReLU
(BN epsilon 1e-3, no conv bias) and the "5x5" branch uses a 3x3 kernel (torchvision issue #906).
The paper's own network is `norm='lrn', kernel_5x5=5`: biased convs, no BatchNorm, local
response normalisation after the first pool and after the 3x3 stem conv (Fig. 3).
Names follow torchvision (conv1, inception3a/branch2_1, aux1/fc2, fc, ...).
"""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.layers import (
    ConvNormAct,
    ModuleDef,
    batch_norm,
    check_min_input,
    local_response_norm,
    pool2d,
    pool2d_ceil,
)
from jaxconv.models.registry import register_model


class ModuleSpec(NamedTuple):
    """One row of Table 1: the filter counts of an Inception module."""

    name: str
    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    pool_proj: int


class Inception(nn.Module):
    """Four parallel branches concatenated on channels (Fig. 2(b), dimension reductions)."""

    spec: ModuleSpec
    conv: ModuleDef
    kernel_5x5: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s, k = self.spec, self.kernel_5x5
        branch1 = self.conv(s.ch1x1, 1, name='branch1')(x)
        branch2 = self.conv(s.ch3x3_reduce, 1, name='branch2_0')(x)
        branch2 = self.conv(s.ch3x3, 3, padding=1, name='branch2_1')(branch2)
        branch3 = self.conv(s.ch5x5_reduce, 1, name='branch3_0')(x)
        branch3 = self.conv(s.ch5x5, k, padding=k // 2, name='branch3_1')(branch3)
        branch4 = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        branch4 = self.conv(s.pool_proj, 1, name='branch4_1')(branch4)
        return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class AuxHead(nn.Module):
    """An auxiliary classifier of Sec. 5, on a 14x14 map at 224x224 input."""

    num_classes: int
    conv: ModuleDef
    dropout: float = 0.7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = pool2d('avg', x, window=5, stride=3)  # 14x14 -> 4x4.
        x = self.conv(128, 1, name='conv')(x)
        x = x.reshape(x.shape[0], -1)  # 4x4x128 = 2048 features at 224x224.
        x = nn.relu(nn.Dense(1024, dtype=self.dtype, name='fc1')(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='fc2')(x)


class GoogLeNet(nn.Module):
    """The 22-layer GoogLeNet: stem, Inception stages 3-5 (`stages`), pooled linear head."""

    stages: Sequence[Sequence[ModuleSpec]]
    num_classes: int = 1000
    aux_logits: bool = True
    aux_after: Sequence[str] = ('4a', '4d')
    dropout: float = 0.4
    aux_dropout: float = 0.7
    norm: str = 'batch'  # 'batch': conv-BN-ReLU (torchvision); 'lrn': biased convs + LRN (paper).
    kernel_5x5: int = 3  # 3: torchvision's weights; 5: the paper's Table 1.
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    dtype: Any = jnp.float32

    default_image_size: ClassVar[int] = 224
    # Each ceil-mode pool needs a 2-pixel map: 31 -> 16 -> 8 -> 4 -> 2 -> 1 is the shortest chain.
    min_size: ClassVar[int] = 31
    # The aux heads' 5x5 avg pool needs a 5x5 map after the third pool: 79 -> 40 -> 20 -> 10 -> 5.
    min_size_aux: ClassVar[int] = 79

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        with_aux = self.aux_logits and train
        check_min_input('googlenet' if not with_aux else 'googlenet with aux heads (training)', x,
                        self.min_size_aux if with_aux else self.min_size)
        if self.norm not in ('batch', 'lrn'):
            raise ValueError(f'unknown norm {self.norm!r}; valid: batch, lrn')
        bn = batch_norm(train, epsilon=1e-3, dtype=self.dtype,
                        group_size=self.bn_group_size) if self.norm == 'batch' else None
        conv = functools.partial(ConvNormAct, norm=bn, dtype=self.dtype)
        lrn = local_response_norm if self.norm == 'lrn' else (lambda y: y)
        pool = functools.partial(pool2d_ceil, 'max', window=3, stride=2)

        x = x.astype(self.dtype)
        x = conv(64, 7, strides=2, padding=3, name='conv1')(x)
        x = lrn(pool(x))
        x = conv(64, 1, name='conv2')(x)
        x = lrn(conv(192, 3, padding=1, name='conv3')(x))
        x = pool(x)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = pool(x)
            for spec in stage:
                x = Inception(spec, conv, self.kernel_5x5, name=f'inception{spec.name}')(x)
                if with_aux and spec.name in self.aux_after:
                    head = AuxHead(self.num_classes, conv, self.aux_dropout, self.dtype,
                                   name=f'aux{self.aux_after.index(spec.name) + 1}')
                    self.sow('intermediates', 'aux_logits', head(x, train))
        x = jnp.mean(x, axis=(1, 2))  # The paper's 7x7 average pool, for any input size.
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)


# --- Variant table: Szegedy et al. 2015, Table 1 (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj), one tuple per stage; a max pool 3x3/2 separates the stages. -----------------------

GOOGLENET_STAGES = (
    (ModuleSpec('3a', 64, 96, 128, 16, 32, 32),
     ModuleSpec('3b', 128, 128, 192, 32, 96, 64)),
    (ModuleSpec('4a', 192, 96, 208, 16, 48, 64),
     ModuleSpec('4b', 160, 112, 224, 24, 64, 64),
     ModuleSpec('4c', 128, 128, 256, 24, 64, 64),
     ModuleSpec('4d', 112, 144, 288, 32, 64, 64),
     ModuleSpec('4e', 256, 160, 320, 32, 128, 128)),
    (ModuleSpec('5a', 256, 160, 320, 32, 128, 128),
     ModuleSpec('5b', 384, 192, 384, 48, 128, 128)),
)


@register_model
def googlenet(**kwargs: Any) -> nn.Module:
    return GoogLeNet(**{'stages': GOOGLENET_STAGES, **kwargs})
