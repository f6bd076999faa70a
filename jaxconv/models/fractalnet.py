"""FractalNet (Larsson, Maire & Shakhnarovich 2017, "FractalNet: Ultra-Deep Neural Networks
without Residuals", Sec. 2 Eq. 1-2, Sec. 3 and Sec. 4, Fig. 1).

Expansion rule (Eq. 1-2): f_1(z) = conv(z), f_{C+1}(z) = join(f_C o f_C (z), conv(z)), join = the
element-wise mean. A block with C columns has 2**C - 1 conv units; column c (1 = shallowest) has
2**(c-1) of them, so B blocks make a network B * 2**(C-1) layers deep. Nested joins are merged
into one join over all the columns meeting there (Fig. 1), and each block ends with 2x2 max pooling
on every column before its last join (the paper's convenience swap of the two). After B = 5 blocks
a 32x32 image is 1x1 and a linear layer gives the logits.

The CIFAR network follows the authors' released generator (github.com/gustavla/fractalnet,
`fractalnet.py` + `globals.crox`): C = 3, filters (64, 128, 256, 512, 512), dropout per block
(`block_dropout_rates`: 0, 0.1, 0.2, 0.3, 0.4) inside each conv unit, and a unit of conv 3x3
(with bias) - dropout - BatchNorm (Caffe's, without learned scale and shift) - ReLU.

Drop-path (Sec. 3) in training, one draw per mini-batch as in the authors' Caffe join layer:
with probability `global_drop_fraction` (0.5: the paper's 50/50 mix) *global* drop-path keeps one
column, chosen uniformly, for the whole network; otherwise *local* drop-path lets each join drop
each input with probability `drop_path_rate` (0.15), keeping at least one. The mean is over the
kept inputs. At test time every join averages all its inputs; `column=c` instead evaluates the
single column c (1..C) alone, the paper's "deepest column" sub-network when c = C.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import BatchNormKnobs
from jaxconv.models.layers import ModuleDef, check_min_input, pool2d
from jaxconv.models.registry import register_variants


class ConvUnit(nn.Module):
    """conv 3x3 - dropout - BatchNorm without affine - ReLU (the authors' `conv` macro)."""

    features: int
    dropout: float
    norm: ModuleDef
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype, name='conv')(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.relu(self.norm(use_scale=False, use_bias=False, name='bn')(x))


def join(paths: Sequence[jax.Array], keep: jax.Array | None = None) -> jax.Array:
    """Mean of the kept `paths` (all when `keep` is None); `keep` must keep at least one."""
    if keep is None:
        return sum(paths) / len(paths)
    weights = keep.astype(paths[0].dtype)
    return sum(w * p for w, p in zip(weights, paths, strict=True)) / weights.sum()


def drop_path_keep(key: jax.Array, columns: Sequence[int], local_rate: float,
                   use_global: jax.Array, global_column: jax.Array) -> jax.Array:
    """Which inputs of a join survive: a boolean per input, never all False.

    Local: each input survives with probability 1 - `local_rate`; if none did, one chosen
    uniformly is kept (the authors' rule). Global: only the input from `global_column`; a join that
    column does not reach keeps everything, its output is never used.
    """
    n = len(columns)
    local_key, pick_key = jax.random.split(key)
    local = jax.random.bernoulli(local_key, 1.0 - local_rate, (n,))
    rescue = jnp.arange(n) == jax.random.randint(pick_key, (), 0, n)
    local = jnp.where(local.any(), local, rescue)
    in_column = jnp.asarray(columns) == global_column
    glob = jnp.where(in_column.any(), in_column, jnp.ones((n,), bool))
    return jnp.where(use_global, glob, local)


class FractalNet(BatchNormKnobs):
    """B fractal blocks of C columns (`filters`, `block_dropout_rates`: one per block), 2x2 pools,
    an FC (`dropout_rate` before it: 0, the authors' generator has none)."""

    num_columns: int = 3
    filters: Sequence[int] = (64, 128, 256, 512, 512)  # One entry per block: B = len(filters).
    block_dropout_rates: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4)
    # Local drop-path: each join drops each input with this probability. FractalNet's own rule
    # (no schedule over depth), hence its own field rather than StochasticDepthKnobs.
    drop_path_rate: float = 0.15
    global_drop_fraction: float = 0.5
    column: int | None = None  # Evaluate only this column (1..C); None: the whole network.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, 2 ** len(self.filters))
        num_cols = self.num_columns
        if self.column is not None and not 1 <= self.column <= num_cols:
            raise ValueError(f'column must be in 1..{num_cols}; got {self.column}')
        drop = train and self.column is None and (
            self.drop_path_rate > 0 or self.global_drop_fraction > 0)
        if drop:  # One global-or-local draw and one global column per mini-batch.
            mode_key, column_key = jax.random.split(self.make_rng('drop_path'))
            use_global = jax.random.bernoulli(mode_key, self.global_drop_fraction)
            global_column = jax.random.randint(column_key, (), 0, num_cols)
        norm = self.norm_layer(train)
        x = x.astype(self.dtype)
        # Columns are indexed 0 (shallowest, one conv per block) to C-1 (deepest, 2**(C-1) convs).
        wanted = range(num_cols) if self.column is None else [self.column - 1]
        blocks = zip(self.filters, self.block_dropout_rates, strict=True)
        for b, (features, rate) in enumerate(blocks, 1):
            paths = [x] * num_cols
            depth = 2 ** (num_cols - 1)
            for row in range(1, depth + 1):
                # Column c has a conv at every 2**(C-1-c)-th row of the deepest column's depth.
                active = [c for c in wanted if row % 2 ** (num_cols - 1 - c) == 0]
                for c in active:
                    index = row // 2 ** (num_cols - 1 - c)  # The unit's place in its column.
                    unit = ConvUnit(features, rate, norm, self.dtype,
                                    name=f'block{b}_col{c + 1}_conv{index}')
                    paths[c] = unit(paths[c], train)
                    if row == depth:
                        paths[c] = pool2d('max', paths[c], window=2, stride=2)
                if len(active) > 1:  # The columns that just met share the joined output.
                    keep = None
                    if drop:
                        keep = drop_path_keep(self.make_rng('drop_path'), active,
                                              self.drop_path_rate, use_global, global_column)
                    joined = join([paths[c] for c in active], keep)
                    for c in active:
                        paths[c] = joined
            x = paths[wanted[0]]
        return self.classify(x, train, name='fc')  # On the 1x1x512 map of a 32x32 input.


# --- Variant table: Sec. 4 CIFAR network, B = 5 blocks of C = 3 columns (20 layers deep). ----

register_variants(FractalNet, {
    'fractalnet20': dict(num_columns=3, filters=(64, 128, 256, 512, 512),
                         block_dropout_rates=(0.0, 0.1, 0.2, 0.3, 0.4), drop_path_rate=0.15,
                         global_drop_fraction=0.5, default_image_size=32),
})
