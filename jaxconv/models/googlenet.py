"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions", Table 1,
Fig. 2(b), Fig. 3 and Sec. 5), as torchvision's `googlenet` and as the paper's Caffe model.

Stem (conv 7x7/2 64, max pool 3x3/2, conv 1x1 64, conv 3x3 192, max pool 3x3/2), the nine
Inception modules of Table 1 (1x1, 1x1 -> 3x3, 1x1 -> "5x5", max pool 3x3/1 -> 1x1 projection,
concatenated), max pools after 3b and 4e, global average pooling, dropout, a linear classifier;
pooling rounds up (Caffe's ceil mode), so 224 -> 112 -> 56 -> 28 -> 14 -> 7. Two auxiliary
classifiers on the outputs of 4a and 4d (Sec. 5): average pooling to 4x4, 1x1 conv 128, FC 1024,
dropout 0.7, FC classes. They run only in training and are sown as `intermediates/aux_logits`
(aux1 first); the trainer adds `train.aux_loss_weight` (0.3) times each.

`googlenet` is torchvision's `googlenet(aux_logits=True, transform_input=False)` exactly (a port
of the TF model; 13,004,888 parameters at 1000 classes, 6,624,904 without aux heads):
- every conv is conv-BN-ReLU (no conv bias, BN epsilon 1e-3), aux convs included;
- the "5x5" branch uses a 3x3 kernel (torchvision issue #906);
- the pool before 5a is 2x2/2 (ceil mode), the aux heads pool adaptively to 4x4;
- dropout 0.2 before the classifier.
`googlenet_paper` is the paper's network: biased convs without BatchNorm, local response
normalisation after the first pool and after the 3x3 stem conv (Fig. 3), 5x5 kernels, a 3x3/2
pool before 5a, aux heads pooling 5x5/3 (Sec. 5; 4x4 on the 14x14 maps of a 224 input, but
different windows from the adaptive pool), dropout 0.4. The two share every field, so any mix is
an override away. Names follow torchvision (conv1, inception3a/branch2_1, aux1/fc2, fc, ...).
"""

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import BatchNormKnobs
from jaxconv.models.layers import (
    ConvNormAct,
    ModuleDef,
    adaptive_avg_pool,
    check_min_input,
    conv7x7_stem,
    local_response_norm,
    pool2d,
    pool2d_ceil,
    smallest_input,
)
from jaxconv.models.registry import register_variants

AUX_POOLS = ('adaptive', 'paper')


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
    pool: str = 'adaptive'
    dropout_rate: float = 0.7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.pool == 'adaptive':
            x = adaptive_avg_pool(x, 4)
        else:
            x = pool2d('avg', x, window=5, stride=3)  # 14x14 -> 4x4.
        x = self.conv(128, 1, name='conv')(x)
        x = x.reshape(x.shape[0], -1)  # 4x4x128 = 2048 features at 224x224.
        x = nn.relu(nn.Dense(1024, dtype=self.dtype, name='fc1')(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='fc2')(x)


class GoogLeNet(BatchNormKnobs):
    """The 22-layer GoogLeNet: stem, Inception stages 3-5 (`stages`), pooled linear head.

    The BatchNorm knobs act when `norm='batch'`; `dropout_rate` is the main head's,
    `aux_dropout_rate` the aux heads'.
    """

    stages: Sequence[Sequence[ModuleSpec]]
    aux_logits: bool = True
    aux_after: Sequence[str] = ('4a', '4d')
    aux_dropout_rate: float = 0.7
    aux_pool: str = 'adaptive'  # 'adaptive': to 4x4 (torchvision); 'paper': 5x5/3.
    norm: str = 'batch'  # 'batch': conv-BN-ReLU (torchvision); 'lrn': biased convs + LRN (paper).
    kernel_5x5: int = 3  # 3: torchvision's weights; 5: the paper's Table 1.
    last_pool_window: int = 2  # The pool before stage 5: 2x2/2 (torchvision) or 3x3/2 (paper).

    def pool_window(self, stage: int) -> int:
        """The window of the stride-2, ceil-mode max pool before stage `stage` (1, 2, ...)."""
        return self.last_pool_window if stage == len(self.stages) - 1 else 3

    def min_input_size(self, with_aux: bool) -> int:
        """The conv1 7x7/2 and every ceil-mode pool leave a pixel; the paper's 5x5 aux pool needs
        a 5x5 map at the aux heads (the adaptive pool takes any map)."""
        stem = [(7, 2, 3, False), (3, 2, 0, True), (3, 2, 0, True)]
        pools = [(self.pool_window(i), 2, 0, True) for i in range(1, len(self.stages))]
        size = smallest_input(stem + pools)
        if with_aux and self.aux_pool == 'paper':  # The aux heads sit in the second stage.
            size = max(size, smallest_input(stem + pools[:1] + [(5, 3, 0, False)]))
        return size

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        with_aux = self.aux_logits and train
        check_min_input(self.variant if not with_aux else
                        f'{self.variant} with aux heads (training)', x,
                        self.min_input_size(with_aux))
        if self.norm not in ('batch', 'lrn'):
            raise ValueError(f'unknown norm {self.norm!r}; valid: batch, lrn')
        if self.aux_pool not in AUX_POOLS:
            raise ValueError(f'unknown aux_pool {self.aux_pool!r}; valid: {", ".join(AUX_POOLS)}')
        bn = self.norm_layer(train) if self.norm == 'batch' else None
        conv = functools.partial(ConvNormAct, norm=bn, dtype=self.dtype)
        lrn = local_response_norm if self.norm == 'lrn' else (lambda y: y)

        x = x.astype(self.dtype)
        x = lrn(conv7x7_stem(x, 64, conv, pool='max_ceil'))
        x = conv(64, 1, name='conv2')(x)
        x = lrn(conv(192, 3, padding=1, name='conv3')(x))
        x = pool2d_ceil('max', x, window=3, stride=2)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = pool2d_ceil('max', x, window=self.pool_window(i), stride=2)
            for spec in stage:
                x = Inception(spec, conv, self.kernel_5x5, name=f'inception{spec.name}')(x)
                if with_aux and spec.name in self.aux_after:
                    head = AuxHead(self.num_classes, conv, self.aux_pool, self.aux_dropout_rate,
                                   self.dtype, name=f'aux{self.aux_after.index(spec.name) + 1}')
                    self.sow('intermediates', 'aux_logits', head(x, train))
        return self.classify(x, train, name='fc')  # The paper's 7x7 average pool, any size.


# --- Variant table: Szegedy et al. 2015, Table 1 (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj), one tuple per stage; a max pool separates the stages. ----------------------------

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

# Every registered name and the GoogLeNet fields it sets.
VARIANTS: dict[str, dict[str, Any]] = {
    # torchvision googlenet: BasicConv2d's BatchNorm eps 0.001 (momentum 0.1 = 0.9 here).
    'googlenet': dict(stages=GOOGLENET_STAGES, bn_epsilon=1e-3, dropout_rate=0.2),
    # Szegedy et al. 2015: Table 1, Fig. 3 (LRN), Sec. 5 (dropout 0.4 and 0.7, aux 5x5/3 pool).
    'googlenet_paper': dict(stages=GOOGLENET_STAGES, norm='lrn', kernel_5x5=5,
                            last_pool_window=3, aux_pool='paper', dropout_rate=0.4),
}
register_variants(GoogLeNet, VARIANTS)
