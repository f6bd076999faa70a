"""MobileNet v1 from timm (`mobilenetv1_100`, its PyTorch-trained layout) and MobileNetV2 from
torchvision.

v1: jaxconv keeps Keras' flat names (conv1, conv_dw_<k>, conv_pw_<k>, conv_preds); timm groups
the 13 separable layers into stages (`blocks.<stage>.<block>`, each a dw conv-`bn1` and pw
conv-`bn2`), in the order of `mobilenet.MOBILENET_V1_STAGES`.

v2: torchvision's InvertedResidual is `conv = Sequential(expand (conv, bn), dw (conv, bn),
project conv, project bn)`, without the expand pair in the first block (t = 1); the stem and the
last 1x1 conv are `Sequential(conv, bn)` at features.0 and features.18.

Keras: v1 has jaxconv's names (BN `<conv>_bn`) and a 1x1 conv classifier; v2 names its blocks
`expanded_conv` (t = 1), then `block_<i>_{expand, depthwise, project}` with `_BN` norms.
"""

import re

from jaxconv.convert.layouts import Layout, dotted, register_layout
from jaxconv.models.mobilenet import MOBILENET_V1_STAGES, PYTORCH_LAYOUT

# The k-th separable layer (k = 1..13) of timm's mobilenetv1_100: (stage, block).
_V1_BLOCKS = [(stage, block) for stage, (repeats, _, _) in enumerate(MOBILENET_V1_STAGES)
              for block in range(repeats)]


def _timm_v1(path: str) -> str:
    if path in ('conv1/conv', 'conv1/bn'):
        return {'conv1/conv': 'conv_stem', 'conv1/bn': 'bn1'}[path]
    if path == 'conv_preds':
        return 'classifier'
    kind, k, part = re.fullmatch(r'conv_(dw|pw)_(\d+)/(conv|bn)', path).groups()
    stage, block = _V1_BLOCKS[int(k) - 1]
    leaf = {('dw', 'conv'): 'conv_dw', ('dw', 'bn'): 'bn1', ('pw', 'conv'): 'conv_pw',
            ('pw', 'bn'): 'bn2'}[kind, part]
    return f'blocks.{stage}.{block}.{leaf}'


def _torchvision_v2(path: str) -> str:
    match = re.fullmatch(r'features_(\d+)/(expand|dw|project)/(conv|bn)', path)
    if not match:  # features_0 and features_18 (conv, bn), classifier_1.
        return dotted(path).replace('.conv', '.0').replace('.bn', '.1')
    index, layer, part = match.groups()
    position = {'expand': 0, 'dw': 1, 'project': 2}[layer] - (index == '1')  # t = 1: no expand.
    if layer == 'project':
        return f'features.{index}.conv.{position + (part == "bn")}'
    return f'features.{index}.conv.{position}.{int(part == "bn")}'


register_layout(Layout('timm', 'mobilenetv1_100', 'mobilenet_v1', _timm_v1,
                       model_kwargs=PYTORCH_LAYOUT))
register_layout(Layout('torchvision', 'mobilenet_v2', 'mobilenet_v2', _torchvision_v2))


def _dense_from_1x1(leaf: str, array):
    """Keras' MobileNet classifies with a 1x1 conv; jaxconv's equivalent Dense drops its 1x1."""
    return array.reshape(array.shape[-2:]) if leaf == 'kernel' else array


def _keras_v1(path: str):
    if path == 'conv_preds':
        return 'conv_preds', _dense_from_1x1
    layer, part = path.split('/')  # jaxconv keeps Keras' names; its BN is `<conv>_bn`.
    return layer if part == 'conv' else f'{layer}_bn'


def _keras_v2(path: str) -> str:
    top = {'features_0/conv': 'Conv1', 'features_0/bn': 'bn_Conv1', 'features_18/conv': 'Conv_1',
           'features_18/bn': 'Conv_1_bn', 'classifier_1': 'predictions'}
    if path in top:
        return top[path]
    index, layer, part = re.fullmatch(r'features_(\d+)/(expand|dw|project)/(conv|bn)',
                                      path).groups()
    prefix = 'expanded_conv' if index == '1' else f'block_{int(index) - 1}'
    name = f'{prefix}_{"depthwise" if layer == "dw" else layer}'
    return f'{name}_BN' if part == 'bn' else name


register_layout(Layout('keras', 'MobileNet', 'keras_mobilenet', _keras_v1))
register_layout(Layout('keras', 'MobileNetV2', 'keras_mobilenetv2', _keras_v2))
