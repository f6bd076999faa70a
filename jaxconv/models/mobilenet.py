"""MobileNet v1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications", Table 1, Fig. 3, Sec. 3.3-3.4) and MobileNetV2 (Sandler et al. 2018,
"MobileNetV2: Inverted Residuals and Linear Bottlenecks", Table 1-2, Sec. 3-4).

MobileNet v1: a 3x3/2 conv with 32 filters, then 13 depthwise-separable layers (depthwise 3x3 -
BN - act, pointwise 1x1 - BN - act) of Table 1 in five stages, global average pooling, FC. Table 1
prints the second-to-last depthwise layer as stride 2; it is stride 1 in the authors' release
(7x7 stays 7x7). The width multiplier alpha (0.25, 0.5, 0.75, 1.0; Sec. 3.3) thins every layer to
int(alpha * channels); the resolution multiplier rho (Sec. 3.4) is just the input size
(128, 160, 192, 224: set dataset.image_size); `depth_multiplier` scales each stage's repeats by
ceil, as timm's builder does (not in the paper). ReLU6 (the paper's text says ReLU;
`activation='relu'`), no conv bias, dropout 1e-3 and a biased 1x1 conv as classifier (here an
equivalent Dense): 4,231,976 parameters at alpha = 1 and 1000 classes, Keras' and timm's figure.
Names follow Keras (conv1, conv_dw_1, conv_pw_1, ..., conv_preds).

Layout of v1. `mobilenet_v1` is the authors' TF-slim release, which Keras' `MobileNet` follows:
TF "SAME" padding, BatchNorm epsilon 1e-3 and Keras' momentum 0.99. timm's `mobilenetv1_100` is
the same network trained in PyTorch: `create_model('mobilenet_v1', **PYTORCH_LAYOUT)`, i.e.
padding='symmetric', bn_epsilon=1e-5, bn_momentum=0.9 (PyTorch's 0.1). `keras_mobilenet` is
Keras' `MobileNet` exactly: it pads strided depthwise convs at the bottom/right by one pixel
also on odd sizes, where TF-slim's 'SAME' pads both sides (`padding='keras'`).

MobileNetV2: a 3x3/2 conv with 32 filters, the 17 inverted residual bottlenecks of Table 2
(1x1 expansion by t - BN - ReLU6, depthwise 3x3 - BN - ReLU6, linear 1x1 projection - BN;
identity shortcut when stride is 1 and widths match), a 1x1 conv to 1280, global average
pooling, dropout 0.2, FC. The width multiplier scales every width and rounds it to a multiple of
8 (`make_divisible`); the last conv never goes below 1280. Layout, padding (symmetric), BatchNorm
(PyTorch's) and counts follow torchvision's `mobilenet_v2`: 3,504,872 parameters at width 1.0,
1000 classes; its names too (features_{i}, classifier_1). `keras_mobilenetv2` is Keras' layout of
the same network (TF padding, BatchNorm epsilon 1e-3, momentum 0.999, no dropout).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxconv.models.base import BatchNormKnobs, ScalingKnobs, StochasticDepthKnobs
from jaxconv.models.layers import (
    ConvNormAct,
    DropPath,
    ModuleDef,
    check_min_input,
    conv_padding,
    get_activation,
)
from jaxconv.models.registry import register_variants

# timm's mobilenetv1_100: nn.BatchNorm2d defaults (momentum 0.1), symmetric padding.
PYTORCH_LAYOUT = dict(padding='symmetric', bn_momentum=0.9, bn_epsilon=1e-5)


class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck (Table 1): expand 1x1, depthwise 3x3, linear project 1x1; with
    an identity shortcut, the branch is dropped at `drop_path_rate` (this block's own rate)."""

    features: int
    strides: int
    expansion: int
    conv: ModuleDef
    drop_path: ModuleDef
    drop_path_rate: float = 0.0
    padding: str | int = 1  # The depthwise conv's (see `conv_padding`).

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        hidden = int(round(in_features * self.expansion))
        y = x
        if self.expansion != 1:
            y = self.conv(hidden, 1, name='expand')(y)
        y = self.conv(hidden, 3, strides=self.strides, padding=self.padding, groups=hidden,
                      name='dw')(y)
        y = self.conv(self.features, 1, activation=None, name='project')(y)  # Linear bottleneck.
        if self.strides != 1 or in_features != self.features:
            return y
        if self.drop_path_rate > 0:
            y = self.drop_path(self.drop_path_rate)(y)
        return x + y


class MobileNetV1(BatchNormKnobs, ScalingKnobs):
    """The depthwise-separable stack of Table 1; `stages` holds (repeats, stride, filters)."""

    stages: Sequence[tuple[int, int, int]]
    stem_width: int = 32
    activation: str = 'relu6'
    padding: str = 'same'  # 'same': TF-slim's; 'symmetric': timm's PyTorch; 'keras': see below.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, 2 * 2 ** sum(s > 1 for _, s, _ in self.stages))
        # Keras pads a strided depthwise conv by one pixel at the bottom/right whatever the size
        # (ZeroPadding2D(((0, 1), (0, 1)))): TF's 'SAME' on even sizes, one pixel less on odd.
        keras = self.padding == 'keras'
        padding = conv_padding('same' if keras else self.padding, 3)
        strided_dw_padding = ((0, 1), (0, 1)) if keras else padding
        conv = functools.partial(ConvNormAct, padding=padding,
                                 norm=self.norm_layer(train),
                                 activation=get_activation(self.activation), dtype=self.dtype)
        x = x.astype(self.dtype)
        # int(alpha * c): the paper's and Keras' widths (divisor=None), not rounded to 8s.
        x = conv(self.scaled_width(self.stem_width, divisor=None), 3, strides=2, name='conv1')(x)
        layer = 0
        for repeats, stride, features in self.stages:
            for j in range(self.scaled_depth(repeats)):
                layer += 1
                in_features = x.shape[-1]
                strides = stride if j == 0 else 1
                x = conv(in_features, 3, strides=strides, groups=in_features,
                         padding=strided_dw_padding if strides > 1 else padding,
                         name=f'conv_dw_{layer}')(x)
                x = conv(self.scaled_width(features, divisor=None), 1, padding=0,
                         name=f'conv_pw_{layer}')(x)
        return self.classify(x, train, name='conv_preds')  # The 7x7 average pool at 224.


class MobileNetV2(BatchNormKnobs, StochasticDepthKnobs, ScalingKnobs):
    """Stem, the bottleneck sequences of Table 2 (`stages`: t, c, n, s), 1x1 conv, FC.

    Stochastic depth (not in the paper; timm's MobileNetV2 has it) drops the residual branches,
    at rates spread over all the blocks by `drop_path_rule`.
    """

    stages: Sequence[tuple[int, int, int, int]]
    round_nearest: int = 8
    stem_width: int = 32
    last_width: int = 1280
    padding: str = 'symmetric'  # 'symmetric': torchvision's; 'same': Keras' (`correct_pad`).

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_min_input(self.variant, x, 2 * 2 ** sum(s > 1 for _, _, _, s in self.stages))
        conv = functools.partial(ConvNormAct, norm=self.norm_layer(train), activation=nn.relu6,
                                 dtype=self.dtype)
        width = functools.partial(self.scaled_width, divisor=self.round_nearest)
        x = x.astype(self.dtype)
        padding = conv_padding(self.padding, 3)
        x = conv(width(self.stem_width), 3, strides=2, padding=padding, name='features_0')(x)
        drop_path = functools.partial(DropPath, deterministic=not train)
        depths = [self.scaled_depth(n) for _, _, n, _ in self.stages]
        index = 1  # torchvision's position in `features`.
        for (t, c, _, s), rates in zip(self.stages, self.drop_path_schedule(depths), strict=True):
            for i, rate in enumerate(rates):
                x = InvertedResidual(width(c), s if i == 0 else 1, t, conv, drop_path,
                                     drop_path_rate=rate, padding=padding,
                                     name=f'features_{index}')(x)
                index += 1
        # Sec. 4: the last layer keeps 1280 channels for multipliers below 1 (better accuracy).
        last = width(self.last_width) if self.width_multiplier > 1 else self.last_width
        x = conv(last, 1, name=f'features_{index}')(x)
        return self.classify(x, train, name='classifier_1')


# --- Variant tables. --------------------------------------------------------------------------

MOBILENET_V1_STAGES = (  # Howard et al. 2017, Table 1: (repeats, first stride, pointwise filters).
    (1, 1, 64),
    (2, 2, 128),
    (2, 2, 256),
    (6, 2, 512),
    (2, 2, 1024),
)
MOBILENET_V2_STAGES = (  # Sandler et al. 2018, Table 2: expansion t, channels c, n, stride s.
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

register_variants(MobileNetV1, {
    # Keras MobileNet: dropout 1e-3, BatchNormalization defaults (momentum 0.99, epsilon 1e-3).
    'mobilenet_v1': dict(stages=MOBILENET_V1_STAGES, padding='same', bn_momentum=0.99,
                         bn_epsilon=1e-3, dropout_rate=1e-3),
    # Keras' MobileNet: mobilenet_v1 but for the padding of strided depthwise convs on odd sizes.
    'keras_mobilenet': dict(stages=MOBILENET_V1_STAGES, padding='keras', bn_momentum=0.99,
                            bn_epsilon=1e-3, dropout_rate=1e-3),
})
register_variants(MobileNetV2, {
    # torchvision mobilenet_v2: dropout 0.2, nn.BatchNorm2d defaults.
    'mobilenet_v2': dict(stages=MOBILENET_V2_STAGES, dropout_rate=0.2),
    # Keras' MobileNetV2: TF padding (ZeroPadding2D(correct_pad) + 'valid' is TF's 'SAME'),
    # BatchNorm epsilon 1e-3 and momentum 0.999, no dropout before the classifier.
    'keras_mobilenetv2': dict(stages=MOBILENET_V2_STAGES, padding='same', bn_epsilon=1e-3,
                              bn_momentum=0.999, dropout_rate=0.0),
})
