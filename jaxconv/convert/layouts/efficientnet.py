"""timm's EfficientNets into jaxconv's, in both layouts: `tf_efficientnet_b*` (timm's port of the
TF weights: TF padding, BatchNorm epsilon 1e-3) is jaxconv's default layout; timm's own
`efficientnet_b*` (PyTorch-trained: symmetric padding, epsilon 1e-5) is the same network with
`efficientnet.PYTORCH_LAYOUT`.

jaxconv's MBConv names (`conv_pw`, `bn1`, `conv_dw`, `bn2`, `se/fc1`, `se/fc2`, `conv_pwl`, `bn3`)
are timm's InvertedResidual ones, except the squeeze-excite convs (timm: `conv_reduce`,
`conv_expand`). timm builds the first stage (no expansion) from DepthwiseSeparableConv, whose
names shift: dw conv-`bn1`, then the projection `conv_pw`-`bn2`.
"""

import re

from jaxconv.convert.layouts import Layout, register_layout
from jaxconv.models.efficientnet import PYTORCH_LAYOUT

_SE = {'se/fc1': 'se.conv_reduce', 'se/fc2': 'se.conv_expand'}
_DEPTHWISE_SEPARABLE = {'bn2': 'bn1', 'conv_pwl': 'conv_pw', 'bn3': 'bn2'}


def _timm(path: str) -> str:
    match = re.fullmatch(r'blocks(\d+)_(\d+)/(.+)', path)
    if not match:
        return path  # conv_stem, bn1, conv_head, bn2, classifier.
    stage, block, inner = match.groups()
    if stage == '0':
        inner = _DEPTHWISE_SEPARABLE.get(inner, inner)
    return f'blocks.{stage}.{block}.{_SE.get(inner, inner)}'


for _phi in range(8):
    register_layout(Layout('timm', f'tf_efficientnet_b{_phi}', f'tf_efficientnet_b{_phi}', _timm))
    register_layout(Layout('timm', f'efficientnet_b{_phi}', f'efficientnet_b{_phi}', _timm,
                           model_kwargs=PYTORCH_LAYOUT))


_KERAS_BLOCK = {'conv_pw': 'expand_conv', 'bn1': 'expand_bn', 'conv_dw': 'dwconv', 'bn2': 'bn',
                'se/fc1': 'se_reduce', 'se/fc2': 'se_expand', 'conv_pwl': 'project_conv',
                'bn3': 'project_bn'}
_KERAS_TOP = {'conv_stem': 'stem_conv', 'bn1': 'stem_bn', 'conv_head': 'top_conv',
              'bn2': 'top_bn', 'classifier': 'predictions',
              # The Normalization layer holds 'mean', 'variance' and 'count'.
              'input_normalization': {'mean': 'normalization/mean',
                                      'var': 'normalization/variance',
                                      'count': 'normalization/count'}}


def _keras(path: str):
    """Keras' EfficientNet: block<stage + 1><repeat as a letter>_<layer>, e.g. block2b_dwconv."""
    match = re.fullmatch(r'blocks(\d+)_(\d+)/(.+)', path)
    if not match:
        return _KERAS_TOP[path]
    stage, block, inner = match.groups()
    return f'block{int(stage) + 1}{chr(ord("a") + int(block))}_{_KERAS_BLOCK[inner]}'


for _phi in range(8):
    register_layout(Layout('keras', f'EfficientNetB{_phi}', f'keras_efficientnetb{_phi}', _keras))
