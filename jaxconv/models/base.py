"""The knobs every family shares, as keyword-only mixins of one base network class.

A family's network inherits the knob sets whose concept it has, for example

    class ResNet(BatchNormKnobs, StochasticDepthKnobs, ScalingKnobs): ...

so `create_model(name, dropout_rate=..., bn_momentum=..., bn_epsilon=..., bn_group_size=...,
drop_path_rate=..., depth_multiplier=..., width_multiplier=...)` means the same thing in every
family that has the concept, and is a TypeError naming the valid fields in one that has not (a
LeNet has no BatchNorm to set a momentum on). The fields are keyword-only, so a family's own
fields keep their order and may stay positional. Per-variant values (ResNet-RS-350's dropout
0.4, EfficientNet's BN momentum 0.99, a variant's training resolution) are never written here:
they live in the family's variant table, the one place a variant is defined.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.layers import ModuleDef, batch_norm, drop_path_rates
from jaxconv.scaling import round_filters, round_repeats


class ConvNet(nn.Module, kw_only=True):
    """Fields of every registered network: classes, head dropout, dtype, training resolution."""

    num_classes: int = 1000
    # Dropout on the features entering the last classifier layer (ResNet-RS's "+dropout"; the
    # rate of both FC dropouts in VGG and AlexNet, whose classifiers have two).
    dropout_rate: float = 0.0
    default_image_size: int = 224  # Training resolution of the variant's recipe; configs read it.
    variant: str = ''  # The registered name; for messages. `register_variants` fills it in.
    dtype: Any = jnp.float32  # Compute dtype; parameters stay float32.

    def classify(self, x: jax.Array, train: bool, *, name: str = 'fc',
                 kernel_init: Any = nn.linear.default_kernel_init) -> jax.Array:
        """The usual head: global average pool (if spatial), dropout, one dense layer."""
        if x.ndim == 4:
            x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=kernel_init, name=name)(x)


class BatchNormKnobs(ConvNet, kw_only=True):
    """BatchNorm's running-average momentum, epsilon and statistics group (see `batch_norm`)."""

    bn_momentum: float = 0.9  # flax convention: PyTorch's 0.1 is 0.9 here, Keras' 0.99 is 0.99.
    bn_epsilon: float = 1e-5
    bn_group_size: int = 0  # Statistics over groups of this many examples; 0: the global batch.
    # Fine-tuning: every BatchNorm normalises with its running statistics and never updates them,
    # in training too (Keras' transfer-learning guide: BN in inference mode on small data).
    bn_frozen: bool = False

    def norm_layer(self, train: bool) -> ModuleDef:
        """The network's BatchNorm factory, built once in `__call__` and passed down."""
        return batch_norm(train and not self.bn_frozen, momentum=self.bn_momentum,
                          epsilon=self.bn_epsilon, dtype=self.dtype, group_size=self.bn_group_size)


class StochasticDepthKnobs(ConvNet, kw_only=True):
    """Drop-path rate of the deepest residual branch, and the rule that spreads it over depth."""

    drop_path_rate: float = 0.0
    drop_path_rule: str = 'block'  # See layers.drop_path_rates for the rules.

    def drop_path_schedule(self, stage_depths: Sequence[int]) -> list[list[float]]:
        """Each block's own rate, stage by stage; blocks only ever see a plain float."""
        return drop_path_rates(stage_depths, self.drop_path_rate, self.drop_path_rule)


class ScalingKnobs(ConvNet, kw_only=True):
    """Depth and width multipliers (Tan & Le 2019, Sec. 3.3), applied by one rounding rule each."""

    depth_multiplier: float = 1.0
    width_multiplier: float = 1.0

    def scaled_depth(self, repeats: int) -> int:
        """Blocks in a stage: ceil(depth_multiplier * repeats) (EfficientNet's round_repeats)."""
        return round_repeats(repeats, self.depth_multiplier)

    def scaled_width(self, channels: int, divisor: int | None = 8) -> int:
        """Channels of a layer: the nearest multiple of `divisor`, never 10% below (EfficientNet's
        round_filters; MobileNetV2's _make_divisible), or with `divisor=None` the truncation
        int(width_multiplier * channels) of MobileNet v1 (Howard et al. 2017, Sec. 3.3)."""
        if divisor is None:
            return int(channels * self.width_multiplier)
        return round_filters(channels, self.width_multiplier, divisor)
