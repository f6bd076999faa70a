"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional
Neural Networks", Sec. 3 and Fig. 2), ZFNet (Zeiler & Fergus 2014, "Visualizing and Understanding
Convolutional Networks", Fig. 3 and Table 2 (b)) and torchvision's single-tower AlexNet.

AlexNet on 227x227 input (the paper's "224" does not divide; every port uses 227):
CONV1 96 11x11/4 -> LRN -> POOL 3x3/2 -> CONV2 256 5x5 pad 2 -> LRN -> POOL -> CONV3 384 3x3 ->
CONV4 384 3x3 -> CONV5 256 3x3 -> POOL -> FC 4096 -> FC 4096 -> FC classes, ReLU after every conv
and hidden FC, dropout 0.5 on the outputs of the two hidden FC layers. With `groups=2` CONV2, CONV4
and CONV5 see only the maps of their own GPU (the two towers of Fig. 2): 60,965,224 parameters at
1000 classes; `groups=1` is the one-tower network, 62,378,344.

ZFNet is Fig. 3 of Zeiler & Fergus on 224x224 input: CONV1 96 7x7/2, CONV2 256 5x5/2, dense (not
grouped) layers 3-5 with the 512, 1024, 512 maps of their Table 2 model (b), contrast
normalisation after the pooling, and ceil-mode pooling (Caffe's), which gives Fig. 3's
110 -> 55 -> 26 -> 13 -> 6 map sizes.

`alexnet_tv` is torchvision's `alexnet` (64-192-384-256-256, no LRN, dropout before each hidden
FC): 61,100,840 parameters. Layers are named conv1..conv5 and fc6..fc8 (the Caffe names).

The classifier: as torchvision, an adaptive average pool to 6x6 (`adaptive_pool_size`) comes
before the flatten, so the FC fan-in and the parameter count are those of the native resolution
whatever the input size; at the native size the pool is the identity. `adaptive_pool_size=None`
is the papers' fixed-size head: the last map is flattened as it is, so FC6 grows with the input.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from jaxconv.models.base import ConvNet
from jaxconv.models.layers import (
    adaptive_avg_pool,
    check_min_input,
    fc_classifier,
    local_response_norm,
    pool2d,
    pool2d_ceil,
    smallest_input,
)
from jaxconv.models.registry import register_variants


class ConvSpec(NamedTuple):
    """One convolutional layer of the AlexNet family and what follows its ReLU."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    grouped: bool = False  # Split into the network's `groups` towers when groups > 1.
    lrn: bool = False  # Local response normalisation after the ReLU.
    pool: bool = False  # Max pooling 3x3/2 after the ReLU.


class AlexNet(ConvNet):
    """A stack of conv layers (`convs`) followed by fully connected layers, AlexNet style.

    `dropout_rate` is the rate of both FC dropouts (0.5 in every variant).
    """

    convs: Sequence[ConvSpec]
    groups: int = 1  # 2: the paper's two-tower network (grouped CONV2, CONV4, CONV5).
    hidden: Sequence[int] = (4096, 4096)
    dropout_before_fc: bool = False  # torchvision drops the FC inputs; the paper their outputs.
    lrn_after_pool: bool = False  # ZFNet normalises the pooled maps; AlexNet pools the normalised.
    ceil_pool: bool = False
    adaptive_pool_size: int | None = 6  # None: the papers' fixed-size head.

    def min_input_size(self) -> int:
        steps = []
        for spec in self.convs:
            steps.append((spec.kernel, spec.stride, spec.padding, False))
            if spec.pool:
                steps.append((3, 2, 0, self.ceil_pool))
        return smallest_input(steps)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, self.min_input_size())
        x = x.astype(self.dtype)
        for i, spec in enumerate(self.convs, start=1):
            p = spec.padding
            x = nn.Conv(spec.features, (spec.kernel, spec.kernel), (spec.stride, spec.stride),
                        padding=((p, p), (p, p)),
                        feature_group_count=self.groups if spec.grouped else 1,
                        dtype=self.dtype, name=f'conv{i}')(x)
            x = nn.relu(x)
            if spec.lrn and not self.lrn_after_pool:
                x = local_response_norm(x)
            if spec.pool:
                x = (pool2d_ceil if self.ceil_pool else pool2d)('max', x, window=3, stride=2)
            if spec.lrn and self.lrn_after_pool:
                x = local_response_norm(x)
        if self.adaptive_pool_size:
            x = adaptive_avg_pool(x, self.adaptive_pool_size)  # 6x6x256 = 9216 features.
        first_fc = len(self.convs) + 1
        names = [f'fc{first_fc + j}' for j in range(len(self.hidden) + 1)]
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        return fc_classifier(x, self.hidden, self.num_classes, names, dropout,
                             dropout_first=self.dropout_before_fc, dtype=self.dtype)


# --- Variant table: (filters, kernel, stride, padding, grouped, lrn, pool) per conv layer. ----

ALEXNET_CONVS = (  # Krizhevsky et al. 2012, Sec. 3.5 and Fig. 2.
    ConvSpec(96, 11, 4, 0, lrn=True, pool=True),
    ConvSpec(256, 5, 1, 2, grouped=True, lrn=True, pool=True),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(384, 3, 1, 1, grouped=True),
    ConvSpec(256, 3, 1, 1, grouped=True, pool=True),
)
ZFNET_CONVS = (  # Zeiler & Fergus 2014, Fig. 3, with Table 2 (b)'s 512-1024-512 layers 3-5.
    ConvSpec(96, 7, 2, 1, lrn=True, pool=True),
    ConvSpec(256, 5, 2, 0, lrn=True, pool=True),
    ConvSpec(512, 3, 1, 1),
    ConvSpec(1024, 3, 1, 1),
    ConvSpec(512, 3, 1, 1, pool=True),
)
ALEXNET_TV_CONVS = (  # torchvision.models.alexnet: "One weird trick" widths, no LRN.
    ConvSpec(64, 11, 4, 2, pool=True),
    ConvSpec(192, 5, 1, 2, pool=True),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(256, 3, 1, 1),
    ConvSpec(256, 3, 1, 1, pool=True),
)

# Every registered name and the AlexNet fields it sets.
VARIANTS: dict[str, dict[str, Any]] = {
    'alexnet': dict(convs=ALEXNET_CONVS, groups=2, default_image_size=227, dropout_rate=0.5),
    'zfnet': dict(convs=ZFNET_CONVS, lrn_after_pool=True, ceil_pool=True, default_image_size=224,
                  dropout_rate=0.5),
    'alexnet_tv': dict(convs=ALEXNET_TV_CONVS, dropout_before_fc=True, default_image_size=224,
                       dropout_rate=0.5),
}
register_variants(AlexNet, VARIANTS)
