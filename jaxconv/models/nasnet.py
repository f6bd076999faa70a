"""NASNet-A (Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image
Recognition", Fig. 2 and 4), the Mobile (4 @ 1056) and Large (6 @ 4032) ImageNet
networks, as released in TF-slim (`nets/nasnet`) and ported to Keras and timm.

Network (Fig. 2, ImageNet column): a 3x3/2 VALID conv + BN, two reduction cells as the stem
("cell_stem_0/1", at 1/4 and 1/2 of the filters), then three stacks of N normal cells with a
reduction cell between stacks, the filters doubling at each reduction; ReLU, global average
pool, dropout, FC. "N @ P" names N normal cells per stack and P penultimate filters: a normal
cell concatenates six states of its width, and the last stack is 4x as wide as the first, so
the first stack's cells are P / 24 wide.

Cells (Fig. 4): each cell takes the previous two states h_i (here `x`) and h_{i-1} (`prev`).
`x` goes through ReLU-1x1 conv-BN; `prev` is brought to the same shape first: by a factorised
reduction (ReLU, two 1x1 convs of filters/2 on even and odd pixel grids, concat, BN) when it has
twice the resolution, by ReLU-1x1 conv-BN when only its width differs. Five blocks each add two
operations (separable convs applied twice with ReLU-BN, 3x3 pools, or identity) and the unused
states are concatenated. Every separable "branch" is ReLU-sepconv-BN-ReLU-sepconv-BN, only the
first sepconv strided.

Padding is TensorFlow's "SAME" everywhere (convs, stride-1 pools that do not count the padding).
The strided 3x3 pools of the reduction cells differ between the ports of the TF weights, and the
logits with them: Keras zero-pads the input and pools VALID, so the max pool can return a zero
that is not in the image and the average counts the padded zeros; timm pads the max pool with
-inf (TF's own SAME max pool) and the average with zeros it counts. `zero_pad_max_pool` picks
Keras (True) or timm (False). (TF-slim's own average pool leaves the padding out of the count;
no library copies that.)

ScheduledDropPath (the paper's regulariser; TF-slim `_apply_drop_path`): each operation of a
block other than the identity is dropped per example with a rate that grows linearly with the
cell's position, rate x (cell number + 1) / number of cells, stem and reduction cells counted. The
paper also ramps the rate linearly over training; the step is not an input of the model, so that
ramp is not here (the rate is the full one from the first step).

Recipe values of the TF-slim configs: BatchNorm decay 0.9997 and epsilon 1e-3, dropout keep 0.5
before the FC, drop-path keep 0.7 for Large and 1.0 (off) for Mobile; fan-out He-normal init.
The TF-slim auxiliary head (on the last cell of the second stack, weight 0.4) is optional
(`aux_logits=True`): neither Keras nor timm has it, and their parameter counts leave it out.

Parameters at 1000 classes: Mobile 5,289,978 (Keras' trainable count; 5,326,716 with the BN
moving statistics Keras also counts), Large 88,753,150 (timm; Keras 88,949,818 with the BN
statistics). Multiply-adds (the paper's ImageNet tables): Mobile 564M at 224, Large 23.8B at 331.
Names follow timm (`conv0`, `cell_stem_0`, `cell_{i}`, `reduction_cell_{i}`, `comb_iter_{k}_left`,
`separable_1/depthwise_conv2d`, `last_linear`, ...).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import BatchNormKnobs, StochasticDepthKnobs
from jaxconv.models.layers import DropPath, ModuleDef, check_min_input, conv_general_dilated
from jaxconv.models.registry import register_variants

# TF-slim's `variance_scaling_initializer(mode='FAN_OUT')`: scale 2, truncated normal, fan-out.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'truncated_normal')
# A flax depthwise kernel is (kh, kw, 1, channels): its fan-in, kh * kw, is TF's fan-out of the
# (kh, kw, channels, 1) depthwise kernel.
depthwise_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')


class ConvBN(nn.Module):
    """[ReLU] - conv - BN: the 1x1 cell inputs (timm's ActConvBn) and the stem conv."""

    features: int
    kernel_size: int
    norm: ModuleDef
    strides: int = 1
    padding: str = 'SAME'
    pre_activation: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pre_activation:
            x = nn.relu(x)
        x = nn.Conv(self.features, (self.kernel_size,) * 2, self.strides, padding=self.padding,
                    use_bias=False, kernel_init=conv_init, dtype=self.dtype, name='conv')(x)
        return self.norm(name='bn')(x)


class SeparableConv(nn.Module):
    """A depthwise-separable conv (Keras' SeparableConv2D): depthwise k x k, pointwise 1x1."""

    features: int
    kernel_size: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        x = nn.Conv(channels, (self.kernel_size,) * 2, self.strides, padding='SAME',
                    feature_group_count=channels, use_bias=False, kernel_init=depthwise_init,
                    conv_general_dilated=conv_general_dilated, dtype=self.dtype,
                    name='depthwise_conv2d')(x)
        return nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=conv_init,
                       dtype=self.dtype, name='pointwise_conv2d')(x)


class SeparableBranch(nn.Module):
    """ReLU-sepconv-BN-ReLU-sepconv-BN ("separable_kxk_2" in TF-slim); only the first strides,
    and the first already maps to `features` (so a stem cell can take the 96-channel stem)."""

    features: int
    kernel_size: int
    norm: ModuleDef
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, strides in ((1, self.strides), (2, 1)):
            x = SeparableConv(self.features, self.kernel_size, strides, self.dtype,
                              name=f'separable_{i}')(nn.relu(x))
            x = self.norm(name=f'bn_sep_{i}')(x)
        return x


def max_pool_strided(x: jax.Array, zero_pad: bool) -> jax.Array:
    """3x3/2 max pool with TF "SAME" geometry; the padding is zeros (Keras) or ignored (TF)."""
    if not zero_pad:
        return nn.max_pool(x, (3, 3), (2, 2), padding='SAME')
    pads = [_same_pads(n) for n in x.shape[1:3]]
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return nn.max_pool(x, (3, 3), (2, 2), padding='VALID')


def _same_pads(size: int, window: int = 3, stride: int = 2) -> tuple[int, int]:
    """TF "SAME" padding of one axis: the extra pixel, if any, goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def avg_pool(x: jax.Array, strides: int) -> jax.Array:
    """3x3 average pool, "SAME": stride 1 leaves the padding out of the count (TF, Keras, timm);
    stride 2 counts it (Keras pools a zero-padded map VALID, timm counts its explicit zeros)."""
    return nn.avg_pool(x, (3, 3), (strides, strides), padding='SAME',
                       count_include_pad=strides > 1)


class Cell(nn.Module):
    """A NASNet-A normal or reduction cell (Fig. 4) on the states `x` (h_i) and `prev` (h_{i-1}).

    `prev=None` is the first stem cell, which takes the stem conv's output as is. Each op other
    than the identity goes through `drop_path` at this cell's `drop_path_rate`.
    """

    features: int
    reduction: bool
    norm: ModuleDef
    drop_path: ModuleDef
    drop_path_rate: float = 0.0
    zero_pad_max_pool: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, prev: jax.Array | None) -> jax.Array:
        prev = self.adjust(x, prev)
        h = ConvBN(self.features, 1, self.norm, dtype=self.dtype, name='conv_1x1')(x)
        drop = self.drop_path(self.drop_path_rate, name='drop_path')  # A new draw per call.
        stride = 2 if self.reduction else 1

        def branch(y, kernel, name, strides=stride):
            return drop(SeparableBranch(self.features, kernel, self.norm, strides, self.dtype,
                                        name=name)(y))

        if not self.reduction:
            s0 = branch(h, 5, 'comb_iter_0_left') + branch(prev, 3, 'comb_iter_0_right')
            s1 = branch(prev, 5, 'comb_iter_1_left') + branch(prev, 3, 'comb_iter_1_right')
            s2 = drop(avg_pool(h, 1)) + prev
            s3 = drop(avg_pool(prev, 1)) + drop(avg_pool(prev, 1))
            s4 = branch(h, 3, 'comb_iter_4_left') + h
            return jnp.concatenate([prev, s0, s1, s2, s3, s4], axis=-1)
        max_pool = functools.partial(max_pool_strided, zero_pad=self.zero_pad_max_pool)
        s0 = branch(h, 5, 'comb_iter_0_left') + branch(prev, 7, 'comb_iter_0_right')
        s1 = drop(max_pool(h)) + branch(prev, 7, 'comb_iter_1_right')
        s2 = drop(avg_pool(h, 2)) + branch(prev, 5, 'comb_iter_2_right')
        s3 = drop(avg_pool(s0, 1)) + s1
        s4 = branch(s0, 3, 'comb_iter_4_left', strides=1) + drop(max_pool(h))
        return jnp.concatenate([s1, s2, s3, s4], axis=-1)

    def adjust(self, x: jax.Array, prev: jax.Array | None) -> jax.Array:
        """`prev` in `x`'s resolution and this cell's width (TF-slim `_reduce_prev_layer`)."""
        if prev is None:
            return x
        if prev.shape[1] != x.shape[1]:
            # Factorised reduction (TF-slim `factorized_reduction`): 1x1 convs on the even grid
            # and on the grid shifted by one pixel (zero-padded at the far edge), half the
            # filters each.
            prev = nn.relu(prev)
            conv = functools.partial(nn.Conv, self.features // 2, (1, 1), use_bias=False,
                                     kernel_init=conv_init, dtype=self.dtype)
            shifted = jnp.pad(prev[:, 1:, 1:], ((0, 0), (0, 1), (0, 1), (0, 0)))
            paths = [conv(name='path_1')(prev[:, ::2, ::2]),
                     conv(name='path_2')(shifted[:, ::2, ::2])]
            return self.norm(name='final_path_bn')(jnp.concatenate(paths, axis=-1))
        if prev.shape[-1] != self.features:
            return ConvBN(self.features, 1, self.norm, dtype=self.dtype,
                          name='conv_prev_1x1')(prev)
        return prev


class AuxHead(nn.Module):
    """TF-slim's auxiliary classifier: ReLU, 5x5/3 VALID average pool, 1x1 conv 128 - BN - ReLU,
    a conv over the whole remaining map to 768 - BN - ReLU, FC."""

    num_classes: int
    norm: ModuleDef
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.avg_pool(nn.relu(x), (5, 5), (3, 3), padding='VALID')
        x = ConvBN(128, 1, self.norm, pre_activation=False, dtype=self.dtype, name='proj')(x)
        x = nn.relu(x)
        conv = nn.Conv(768, x.shape[1:3], padding='VALID', use_bias=False, kernel_init=conv_init,
                       dtype=self.dtype, name='conv')
        x = nn.relu(self.norm(name='bn')(conv(x)))
        return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x.reshape(x.shape[0], -1))


class NASNet(BatchNormKnobs, StochasticDepthKnobs):
    """NASNet-A "N @ P" for ImageNet (Fig. 2): stem conv, two stem reduction cells, three stacks
    of `num_cells` normal cells joined by reduction cells, ReLU, pool, dropout, FC.

    `skip_reduction`: the cell after a reduction takes as h_{i-1} the state from before the last
    normal cell, not the last normal cell (TF-slim `skip_reduction_layer_input`; Large: True).
    """

    num_cells: int
    penultimate_filters: int
    stem_filters: int
    skip_reduction: bool
    filter_multiplier: int = 2
    zero_pad_max_pool: bool = True
    aux_logits: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.penultimate_filters % 24:
            raise ValueError(f'{self.variant}: penultimate_filters={self.penultimate_filters} '
                             'must be a multiple of 24 (six states of filters x 4 channels)')
        check_min_input(self.variant, x, 32)  # Keras' minimum: 32 -> 15 -> 8 -> 4 -> 2 -> 1.
        if self.aux_logits and train:  # Its 5x5 pool needs 5x5 maps: 67 -> 33 -> 17 -> 9 -> 5.
            check_min_input(f'{self.variant} with its aux head (training)', x, 67)
        norm = self.norm_layer(train)
        filters = self.penultimate_filters // 24
        m = self.filter_multiplier
        # Cells in the order they run: the two stem cells, then the stacks with a reduction
        # before the second and third. TF-slim numbers them all for the drop-path rates.
        plan = [(filters // m ** 2, True, 'cell_stem_0'), (filters // m, True, 'cell_stem_1')]
        for stack in range(3):
            if stack:
                plan.append((filters * m ** stack, True, f'reduction_cell_{stack - 1}'))
            plan += [(filters * m ** stack, False, f'cell_{stack * self.num_cells + i}')
                     for i in range(self.num_cells)]
        # The stem conv is block 0 of the 'block' rule, so cell i gets rate * (i + 1) / cells.
        rates = [r for stage in self.drop_path_schedule([len(plan) + 1]) for r in stage][1:]

        x = ConvBN(self.stem_filters, 3, norm, strides=2, padding='VALID', pre_activation=False,
                   dtype=self.dtype, name='conv0')(x.astype(self.dtype))
        prev = None
        drop_path = functools.partial(DropPath, deterministic=not train)
        aux_cell = f'cell_{2 * self.num_cells - 1}'
        for (features, reduction, name), rate in zip(plan, rates, strict=True):
            out = Cell(features, reduction, norm, drop_path, rate, self.zero_pad_max_pool,
                       self.dtype, name=name)(x, prev)
            # After a reduction, h_{i-1} stays the state before the last normal cell when
            # skipping (Large); the stem cells always pass their input on.
            if not (self.skip_reduction and name.startswith('reduction_cell')):
                prev = x
            x = out
            if self.aux_logits and train and name == aux_cell:
                aux = AuxHead(self.num_classes, norm, self.dtype, name='aux')(x)
                self.sow('intermediates', 'aux_logits', aux)
        return self.classify(nn.relu(x), train, name='last_linear')


# TF-slim configs (nasnet.py, mobile_imagenet_config / large_imagenet_config) and arg scopes.
MOBILE = dict(num_cells=4, penultimate_filters=1056, stem_filters=32, skip_reduction=False,
              default_image_size=224, dropout_rate=0.5, drop_path_rate=0.0,
              bn_momentum=0.9997, bn_epsilon=1e-3)
LARGE = dict(num_cells=6, penultimate_filters=4032, stem_filters=96, skip_reduction=True,
             default_image_size=331, dropout_rate=0.5, drop_path_rate=0.3,
             bn_momentum=0.9997, bn_epsilon=1e-3)

# Every registered name and the NASNet fields it sets (the one place a variant is defined).
VARIANTS: dict[str, dict[str, Any]] = {
    'nasnetamobile': dict(MOBILE, zero_pad_max_pool=True),  # Keras' NASNetMobile padding.
    'keras_nasnetmobile': dict(MOBILE, zero_pad_max_pool=True),  # Alias: Keras' layout.
    'nasnetalarge': dict(LARGE, zero_pad_max_pool=False),  # timm's nasnetalarge padding.
    'keras_nasnetlarge': dict(LARGE, zero_pad_max_pool=True),
}
register_variants(NASNet, VARIANTS)
