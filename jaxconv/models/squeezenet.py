"""SqueezeNet (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters
and <0.5MB model size", Table 1, Fig. 2 and Sec. 6) and the authors' SqueezeNet 1.1.

A Fire module squeezes with 1x1 filters (s1x1), then expands with parallel 1x1 (e1x1) and 3x3
(e3x3) filters whose outputs are concatenated; ReLU after each conv, biased convs, no BatchNorm.
SqueezeNet 1.0 (Table 1): conv1 96 7x7/2, max pool 3x3/2, fire2-4, pool, fire5-8, pool, fire9,
dropout 0.5, conv10 1x1 to the classes + ReLU, global average pooling. SqueezeNet 1.1 (the
authors' v1.1 release) starts with 64 3x3/2 filters and pools earlier, for 2.4x fewer FLOPs at the
same accuracy. Pooling rounds up (Caffe's ceil mode). `bypass=True` adds the simple bypass of
Sec. 6 / Fig. 2 (middle): an identity shortcut around every Fire module whose input and output
widths match (fire3, 5, 7, 9); it has no parameters.

Layout and names follow torchvision's `squeezenet1_0` / `squeezenet1_1` (features_{i} with
squeeze/expand1x1/expand3x3, classifier_1): 1,248,424 and 1,235,496 parameters at 1000 classes.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.base import ConvNet
from jaxconv.models.layers import check_min_input, pool2d_ceil, smallest_input
from jaxconv.models.registry import register_variants

Layer = tuple[str, int, int, int]  # ('conv', filters, kernel, stride) | ('fire', s1x1, e1x1, e3x3)
POOL = ('pool', 3, 3, 2)  # Max pool 3x3/2, ceil mode.


class Fire(nn.Module):
    """Squeeze 1x1, then expand with 1x1 and 3x3 filters side by side (Sec. 3.2, Fig. 1)."""

    squeeze: int
    expand1x1: int
    expand3x3: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = nn.relu(nn.Conv(self.squeeze, (1, 1), dtype=self.dtype, name='squeeze')(x))
        e1 = nn.relu(nn.Conv(self.expand1x1, (1, 1), dtype=self.dtype, name='expand1x1')(s))
        e3 = nn.relu(nn.Conv(self.expand3x3, (3, 3), padding=1, dtype=self.dtype,
                             name='expand3x3')(s))
        return jnp.concatenate([e1, e3], axis=-1)


class SqueezeNet(ConvNet):
    """A stem conv, Fire modules and ceil-mode pools (`layers`), then the conv10 classifier.

    `dropout_rate` is the dropout before conv10 (0.5).
    """

    layers: Sequence[Layer]
    bypass: bool = False

    def min_input_size(self) -> int:
        """The smallest input for which the unpadded stem and every ceil-mode pool have a map."""
        return smallest_input([(b, c, 0, kind == 'pool') for kind, _, b, c in self.layers
                               if kind != 'fire'])

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, self.min_input_size())
        x = x.astype(self.dtype)
        index = 0  # torchvision's position in `features` (a conv's ReLU counts too).
        for kind, a, b, c in self.layers:
            if kind == 'conv':
                x = nn.Conv(a, (b, b), strides=(c, c), padding='VALID', dtype=self.dtype,
                            name=f'features_{index}')(x)
                x = nn.relu(x)
                index += 2
            elif kind == 'pool':
                x = pool2d_ceil('max', x, window=b, stride=c)
                index += 1
            else:
                y = Fire(a, b, c, dtype=self.dtype, name=f'features_{index}')(x)
                x = x + y if self.bypass and y.shape == x.shape else y
                index += 1
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.relu(nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name='classifier_1')(x))
        return jnp.mean(x, axis=(1, 2))  # Global average pooling: the class scores.


# --- Variant table: Table 1 (v1.0) and the v1.1 release; fire = (s1x1, e1x1, e3x3). -----------

SQUEEZENET_1_0 = (
    ('conv', 96, 7, 2), POOL,
    ('fire', 16, 64, 64), ('fire', 16, 64, 64), ('fire', 32, 128, 128), POOL,
    ('fire', 32, 128, 128), ('fire', 48, 192, 192), ('fire', 48, 192, 192),
    ('fire', 64, 256, 256), POOL,
    ('fire', 64, 256, 256),
)
SQUEEZENET_1_1 = (
    ('conv', 64, 3, 2), POOL,
    ('fire', 16, 64, 64), ('fire', 16, 64, 64), POOL,
    ('fire', 32, 128, 128), ('fire', 32, 128, 128), POOL,
    ('fire', 48, 192, 192), ('fire', 48, 192, 192), ('fire', 64, 256, 256),
    ('fire', 64, 256, 256),
)


# Every registered name and the SqueezeNet fields it sets (torchvision's dropout 0.5).
VARIANTS: dict[str, dict[str, Any]] = {
    'squeezenet1_0': dict(layers=SQUEEZENET_1_0, dropout_rate=0.5),
    'squeezenet1_1': dict(layers=SQUEEZENET_1_1, dropout_rate=0.5),
}
register_variants(SqueezeNet, VARIANTS)
