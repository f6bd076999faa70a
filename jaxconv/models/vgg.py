"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", Table 1 and Sec. 2.1) with torchvision's BatchNorm variants, and MiniVGG.

Table 1's configurations A, A-LRN, B, C, D, E: 3x3 convolutions with padding 1 (C adds three 1x1
convolutions), max pooling 2x2/2 after each of the five stages, then FC 4096 - FC 4096 - FC classes
with dropout 0.5 after the two hidden FC layers; 224x224 input. A-LRN puts the LRN of
Krizhevsky et al. after the first layer. The `_bn` variants add BatchNorm between each conv and
its ReLU and keep the conv bias, as torchvision's `vgg*_bn` do. Submodules are named by their
torchvision index (`features_0`, `features_2`, ..., `classifier_6`; BatchNorm shifts the indices
exactly as in torchvision), so checkpoints map key for key.

As torchvision, an adaptive average pool to 7x7 (`adaptive_pool_size`) comes before the flatten,
so FC6 always has 7x7x512 = 25,088 inputs and the parameter count does not change with the input
size; at 224x224 the pool is the identity. `adaptive_pool_size=None` is the paper's fixed-size
head (and Keras' VGG16/19): the last map is flattened as it is.

MiniVGG is the 32x32 network of the course table (Rosebrock, "Deep Learning for Computer Vision
with Python", MiniVGGNet): [CONV-ReLU-BN]x2 - POOL - DROPOUT 0.25 for 32 and then 64 filters,
FC 512 - ReLU - BN - DROPOUT 0.5, FC classes.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxconv.models.base import BatchNormKnobs
from jaxconv.models.layers import (
    adaptive_avg_pool,
    check_min_input,
    fc_classifier,
    local_response_norm,
    pool2d,
)
from jaxconv.models.registry import register_variants

Layer = int | tuple[int, int] | str  # conv3-N as N, conv1-N as (N, 1), 'M' max pool, 'LRN'.


class VGG(BatchNormKnobs):
    """A VGG configuration (`layers`, one of Table 1's columns) with the three-FC classifier.

    `dropout_rate` is the rate of both FC dropouts (0.5 in every variant); the BatchNorm knobs act
    only in the `_bn` variants (`batch_norm=True`).
    """

    layers: Sequence[Layer]
    batch_norm: bool = False
    hidden: Sequence[int] = (4096, 4096)  # The widths of the hidden FC layers.
    adaptive_pool_size: int | None = 7  # None: the paper's fixed-size head.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        num_pools = sum(layer == 'M' for layer in self.layers)
        check_min_input(self.variant, x, 2 ** num_pools)
        norm = self.norm_layer(train)
        x = x.astype(self.dtype)
        index = 0  # torchvision's position in its `features` Sequential (ReLU and pools count).
        for layer in self.layers:
            if layer == 'M':
                x = pool2d('max', x, window=2, stride=2)
                index += 1
            elif layer == 'LRN':
                x = local_response_norm(x)
                index += 1
            else:
                features, kernel = layer if isinstance(layer, tuple) else (layer, 3)
                x = nn.Conv(features, (kernel, kernel), padding=kernel // 2, dtype=self.dtype,
                            name=f'features_{index}')(x)
                if self.batch_norm:
                    x = norm(name=f'features_{index + 1}')(x)
                    index += 1
                x = nn.relu(x)
                index += 2
        if self.adaptive_pool_size:
            x = adaptive_avg_pool(x, self.adaptive_pool_size)  # 7x7x512 = 25088 features.
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        names = [f'classifier_{3 * i}' for i in range(len(self.hidden) + 1)]  # torchvision's.
        return fc_classifier(x, self.hidden, self.num_classes, names, dropout, dtype=self.dtype)


class MiniVGG(BatchNormKnobs):
    """MiniVGGNet: two VGG stages of CONV-ReLU-BN pairs and a BatchNorm'd FC layer, for 32x32.

    `dropout_rate` is the classifier's (0.5), `stage_dropout_rate` the one after each stage (0.25).
    """

    filters: Sequence[int] = (32, 64)
    hidden: int = 512
    stage_dropout_rate: float = 0.25

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, 2 ** len(self.filters))
        norm = self.norm_layer(train)
        x = x.astype(self.dtype)
        for stage, features in enumerate(self.filters, start=1):
            for j in (1, 2):
                x = nn.Conv(features, (3, 3), padding=1, dtype=self.dtype,
                            name=f'block{stage}_conv{j}')(x)
                x = norm(name=f'block{stage}_bn{j}')(nn.relu(x))  # The course's CONV-ACT-BN order.
            x = pool2d('max', x, window=2, stride=2)
            x = nn.Dropout(self.stage_dropout_rate, deterministic=not train)(x)
        x = x.reshape(x.shape[0], -1)  # 8x8x64 = 4096 features at 32x32.
        x = norm(name='fc1_bn')(nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x)))
        return self.classify(x, train, name='fc2')


# --- Variant table: Simonyan & Zisserman 2015, Table 1 (columns A to E). ---------------------

VGG_LAYERS: dict[str, tuple[Layer, ...]] = {
    'A': (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'A-LRN': (64, 'LRN', 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'B': (64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'C': (64, 64, 'M', 128, 128, 'M', 256, 256, (256, 1), 'M', 512, 512, (512, 1), 'M',
          512, 512, (512, 1), 'M'),
    'D': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'),
    'E': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M',
          512, 512, 512, 512, 'M'),
}
PAPER = dict(default_image_size=224, dropout_rate=0.5)  # Sec. 3.1: dropout 0.5, 224x224 crops.
BN = dict(PAPER, batch_norm=True)  # torchvision's vgg*_bn: momentum 0.1 (0.9 here), eps 1e-5.
KERAS = dict(default_image_size=224, dropout_rate=0.0, adaptive_pool_size=None)

# Every registered name and the VGG fields it sets.
VARIANTS: dict[str, dict[str, Any]] = {
    'vgg11': dict(PAPER, layers=VGG_LAYERS['A']),
    'vgg11_lrn': dict(PAPER, layers=VGG_LAYERS['A-LRN']),
    'vgg13': dict(PAPER, layers=VGG_LAYERS['B']),
    'vgg16_c': dict(PAPER, layers=VGG_LAYERS['C']),
    'vgg16': dict(PAPER, layers=VGG_LAYERS['D']),
    'vgg19': dict(PAPER, layers=VGG_LAYERS['E']),
    'vgg11_bn': dict(BN, layers=VGG_LAYERS['A']),
    'vgg13_bn': dict(BN, layers=VGG_LAYERS['B']),
    'vgg16_bn': dict(BN, layers=VGG_LAYERS['D']),
    'vgg19_bn': dict(BN, layers=VGG_LAYERS['E']),
    # Keras' VGG16 / VGG19: the paper's fixed-size head (the last map flattened as it is) and no
    # dropout layer in the graph; names block{s}_conv{k}, fc1, fc2, predictions (convert/layouts).
    'keras_vgg16': dict(KERAS, layers=VGG_LAYERS['D']),
    'keras_vgg19': dict(KERAS, layers=VGG_LAYERS['E']),
}
register_variants(VGG, VARIANTS)
register_variants(MiniVGG, {'minivgg': dict(default_image_size=32, dropout_rate=0.5)})
