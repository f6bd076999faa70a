"""MobileNet v1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications", Table 1, Fig. 3, Sec. 3.3-3.4) and MobileNetV2 (Sandler et al. 2018,
"MobileNetV2: Inverted Residuals and Linear Bottlenecks", Table 1-2, Sec. 3-4).

MobileNet v1: a 3x3/2 conv with 32 filters, then 13 depthwise-separable layers (depthwise 3x3 -
BN - act, pointwise 1x1 - BN - act) of Table 1, global average pooling, FC. Table 1 prints the
second-to-last depthwise layer as stride 2; it is stride 1 in the authors' release (7x7 stays
7x7). The width multiplier alpha (0.25, 0.5, 0.75, 1.0; Sec. 3.3) thins every layer to
int(alpha * channels); the resolution multiplier rho (Sec. 3.4) is just the input size
(128, 160, 192, 224: set dataset.image_size). As in the authors' TF-slim release and Keras'
`MobileNet`: ReLU6 (the paper's text says ReLU; `activation='relu'`), TF "SAME" padding, no conv
bias, BN epsilon 1e-3, dropout 1e-3 and a biased 1x1 conv as classifier (here an equivalent
Dense). 4,231,976 trainable parameters at alpha = 1 and 1000 classes, Keras' figure.
Names follow Keras (conv1, conv_dw_1, conv_pw_1, ..., conv_preds).

MobileNetV2: a 3x3/2 conv with 32 filters, the 17 inverted residual bottlenecks of Table 2
(1x1 expansion by t - BN - ReLU6, depthwise 3x3 - BN - ReLU6, linear 1x1 projection - BN;
identity shortcut when stride is 1 and widths match), a 1x1 conv to 1280, global average
pooling, dropout 0.2, FC. The width multiplier scales every width and rounds it to a multiple of
8 (`make_divisible`); the last conv never goes below 1280. Layout, padding (symmetric) and
counts follow torchvision's `mobilenet_v2`: 3,504,872 parameters at width 1.0, 1000 classes.
"""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.layers import (
    ConvNormAct,
    ModuleDef,
    batch_norm,
    check_min_input,
    get_activation,
    make_divisible,
)
from jaxconv.models.registry import register_model


class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck (Table 1): expand 1x1, depthwise 3x3, linear project 1x1."""

    features: int
    strides: int
    expansion: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        hidden = int(round(in_features * self.expansion))
        y = x
        if self.expansion != 1:
            y = self.conv(hidden, 1, name='expand')(y)
        y = self.conv(hidden, 3, strides=self.strides, padding=1, groups=hidden, name='dw')(y)
        y = self.conv(self.features, 1, activation=None, name='project')(y)  # Linear bottleneck.
        if self.strides == 1 and in_features == self.features:
            return x + y
        return y


class MobileNetV1(nn.Module):
    """The depthwise-separable stack of Table 1; `layers` holds (pointwise filters, stride)."""

    layers: Sequence[tuple[int, int]]
    num_classes: int = 1000
    width_multiplier: float = 1.0
    stem_features: int = 32
    activation: str = 'relu6'
    dropout: float = 1e-3
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    dtype: Any = jnp.float32

    default_image_size: ClassVar[int] = 224

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input('mobilenet_v1', x, 32)
        norm = batch_norm(train, epsilon=1e-3, dtype=self.dtype,
                          group_size=self.bn_group_size)
        conv = functools.partial(ConvNormAct, padding='SAME', norm=norm,
                                 activation=get_activation(self.activation), dtype=self.dtype)
        alpha = self.width_multiplier
        x = x.astype(self.dtype)
        x = conv(int(self.stem_features * alpha), 3, strides=2, name='conv1')(x)
        for i, (features, stride) in enumerate(self.layers, start=1):
            in_features = x.shape[-1]
            x = conv(in_features, 3, strides=stride, groups=in_features, name=f'conv_dw_{i}')(x)
            x = conv(int(features * alpha), 1, name=f'conv_pw_{i}')(x)
        x = jnp.mean(x, axis=(1, 2))  # The 7x7 average pool at 224, for any input size.
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='conv_preds')(x)


class MobileNetV2(nn.Module):
    """Stem, the bottleneck sequences of Table 2 (`layers`: t, c, n, s), 1x1 conv, FC."""

    layers: Sequence[tuple[int, int, int, int]]
    num_classes: int = 1000
    width_multiplier: float = 1.0
    round_nearest: int = 8
    stem_features: int = 32
    last_features: int = 1280
    dropout: float = 0.2
    bn_group_size: int = 0  # BatchNorm statistics over groups of this many examples; 0: batch.
    dtype: Any = jnp.float32

    default_image_size: ClassVar[int] = 224

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input('mobilenet_v2', x, 32)
        norm = batch_norm(train, dtype=self.dtype,
                          group_size=self.bn_group_size)
        conv = functools.partial(ConvNormAct, norm=norm, activation=nn.relu6, dtype=self.dtype)
        alpha, divisor = self.width_multiplier, self.round_nearest
        x = x.astype(self.dtype)
        x = conv(make_divisible(self.stem_features * alpha, divisor), 3, strides=2, padding=1,
                 name='features_0')(x)
        index = 1  # torchvision's position in `features`.
        for t, c, n, s in self.layers:
            features = make_divisible(c * alpha, divisor)
            for i in range(n):
                x = InvertedResidual(features, s if i == 0 else 1, t, conv,
                                     name=f'features_{index}')(x)
                index += 1
        # Sec. 4: the last layer keeps 1280 channels for multipliers below 1 (better accuracy).
        last = make_divisible(self.last_features * max(1.0, alpha), divisor)
        x = conv(last, 1, name=f'features_{index}')(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier_1')(x)


# --- Variant tables. --------------------------------------------------------------------------

MOBILENET_V1_LAYERS = (  # Howard et al. 2017, Table 1: (pointwise filters, depthwise stride).
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
MOBILENET_V2_LAYERS = (  # Sandler et al. 2018, Table 2: expansion t, channels c, n, stride s.
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@register_model
def mobilenet_v1(**kwargs: Any) -> nn.Module:
    return MobileNetV1(**{'layers': MOBILENET_V1_LAYERS, **kwargs})


@register_model
def mobilenet_v2(**kwargs: Any) -> nn.Module:
    return MobileNetV2(**{'layers': MOBILENET_V2_LAYERS, **kwargs})
