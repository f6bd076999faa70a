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
FC): 61,100,840 parameters. Layers are named conv1..conv5 and fc6..fc8 (the Caffe names); they map
in order onto torchvision's features.{0,3,6,8,10} and classifier.{1,4,6} (the first FC kernel
needs its input rows permuted from CHW to our HWC flattening).
"""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.layers import check_min_input, local_response_norm, pool2d, pool2d_ceil
from jaxconv.models.registry import register_model


class ConvSpec(NamedTuple):
    """One convolutional layer of the AlexNet family and what follows its ReLU."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    grouped: bool = False  # Split into the network's `groups` towers when groups > 1.
    lrn: bool = False  # Local response normalisation after the ReLU.
    pool: bool = False  # Max pooling 3x3/2 after the ReLU.


def _pool_out(n: int, ceil: bool) -> int:
    """Output side of a 3x3/2 max pooling (floor or ceil mode) on an n-pixel map."""
    if ceil:
        out = -(-(n - 3) // 2) + 1
        return out - 1 if (out - 1) * 2 >= n else out
    return (n - 3) // 2 + 1


def min_input_size(convs: Sequence[ConvSpec], ceil_pool: bool) -> int:
    """The smallest square input for which every conv and pooling still has a map to work on."""
    for size in range(1, 4096):
        n, ok = size, True
        for spec in convs:
            n = (n + 2 * spec.padding - spec.kernel) // spec.stride + 1
            if n < 1 or (spec.pool and (n < 3 if not ceil_pool else n < 2)):
                ok = False
                break
            if spec.pool:
                n = _pool_out(n, ceil_pool)
        if ok and n >= 1:
            return size
    raise ValueError('no input size fits these layers')


class AlexNet(nn.Module):
    """A stack of conv layers (`convs`) followed by fully connected layers, AlexNet style."""

    convs: Sequence[ConvSpec]
    num_classes: int = 1000
    groups: int = 1  # 2: the paper's two-tower network (grouped CONV2, CONV4, CONV5).
    hidden: Sequence[int] = (4096, 4096)
    dropout: float = 0.5
    dropout_before_fc: bool = False  # torchvision drops the FC inputs; the paper their outputs.
    lrn_after_pool: bool = False  # ZFNet normalises the pooled maps; AlexNet pools the normalised.
    ceil_pool: bool = False
    dtype: Any = jnp.float32

    default_image_size: ClassVar[int] = 227

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(type(self).__name__, x, min_input_size(self.convs, self.ceil_pool))
        pool = functools.partial(pool2d_ceil if self.ceil_pool else pool2d, 'max', window=3,
                                 stride=2)
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
                x = pool(x)
            if spec.lrn and self.lrn_after_pool:
                x = local_response_norm(x)
        x = x.reshape(x.shape[0], -1)  # 6x6x256 = 9216 features at the native resolution.
        drop = nn.Dropout(self.dropout, deterministic=not train)
        first_fc = len(self.convs) + 1
        for j, width in enumerate(self.hidden):
            if self.dropout_before_fc:
                x = drop(x)
            x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f'fc{first_fc + j}')(x))
            if not self.dropout_before_fc:
                x = drop(x)
        return nn.Dense(self.num_classes, dtype=self.dtype,
                        name=f'fc{first_fc + len(self.hidden)}')(x)


class ZFNet(AlexNet):
    """AlexNet's layout with ZFNet's layers; a subclass only for its native input size."""

    default_image_size: ClassVar[int] = 224


class AlexNetTV(AlexNet):
    """torchvision's single-tower AlexNet; a subclass only for its native input size."""

    default_image_size: ClassVar[int] = 224


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


def _create(cls: type[AlexNet], defaults: dict[str, Any], **overrides: Any) -> AlexNet:
    return cls(**{**defaults, **overrides})


@register_model
def alexnet(**kwargs: Any) -> nn.Module:
    return _create(AlexNet, dict(convs=ALEXNET_CONVS, groups=2), **kwargs)


@register_model
def zfnet(**kwargs: Any) -> nn.Module:
    return _create(ZFNet, dict(convs=ZFNET_CONVS, lrn_after_pool=True, ceil_pool=True), **kwargs)


@register_model
def alexnet_tv(**kwargs: Any) -> nn.Module:
    return _create(AlexNetTV, dict(convs=ALEXNET_TV_CONVS, dropout_before_fc=True), **kwargs)
