"""Inception-ResNet-v2: timm's `inception_resnet_v2` and Keras' `InceptionResNetV2`.

jaxconv names the trunk as TF-slim does (Conv2d_1a_3x3 ... Mixed_5b, block35_1 ..., Mixed_6a,
block17_1 ..., Mixed_7a, block8_1 ... block8_10, Conv2d_7b_1x1, fc) and each residual block's
linear 1x1 conv `conv_linear`.
- timm: lower-case stem names, the blocks in Sequentials `repeat`, `repeat_1`, `repeat_2` with
  the last C block apart as `block8`, `conv2d` for the linear conv, `classif` for the classifier.
- Keras names only the linear convs (`block35_1_conv`), `conv_7b` and `predictions`; every other
  conv and BatchNorm is unnamed, numbered per session in build order: conv2d, conv2d_1, ... and
  batch_normalization, batch_normalization_1, ... (one BN per unnamed conv, same number).
"""

from jaxconv.convert.layouts import Layout, dotted, register_layout
from jaxconv.convert.layouts.xception import keras_auto_name

_TIMM_TOP = {'Conv2d_1a_3x3': 'conv2d_1a', 'Conv2d_2a_3x3': 'conv2d_2a',
             'Conv2d_2b_3x3': 'conv2d_2b', 'Conv2d_3b_1x1': 'conv2d_3b',
             'Conv2d_4a_3x3': 'conv2d_4a', 'Mixed_5b': 'mixed_5b', 'Mixed_6a': 'mixed_6a',
             'Mixed_7a': 'mixed_7a', 'Conv2d_7b_1x1': 'conv2d_7b'}
_TIMM_STAGES = {'block35': 'repeat', 'block17': 'repeat_1', 'block8': 'repeat_2'}


def _timm(path: str) -> str:
    if path == 'fc':
        return 'classif'
    top, *inner = path.split('/')
    if top in _TIMM_TOP:
        module = _TIMM_TOP[top]
    else:
        kind, number = top.rsplit('_', 1)
        module = 'block8' if top == 'block8_10' else f'{_TIMM_STAGES[kind]}.{int(number) - 1}'
    if inner == ['conv_linear']:
        return f'{module}.conv2d'
    if len(inner) == 2:
        branch = 'branch3.1' if inner[0] == 'branch3' else dotted(inner[0])
        return f'{module}.{branch}.{inner[1]}'
    return f'{module}.{inner[0]}'


def _keras_build_order() -> dict[str, int]:
    """jaxconv's conv-BN modules in the order Keras' InceptionResNetV2 builds its unnamed ones."""
    a = ('branch0', 'branch1_0', 'branch1_1', 'branch2_0', 'branch2_1', 'branch2_2')
    bc = ('branch0', 'branch1_0', 'branch1_1', 'branch1_2')
    paths = ['Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1', 'Conv2d_4a_3x3']
    paths += [f'Mixed_5b/{b}' for b in (*a, 'branch3')]
    paths += [f'block35_{i}/{b}' for i in range(1, 11) for b in a]
    paths += [f'Mixed_6a/{b}' for b in bc]
    paths += [f'block17_{i}/{b}' for i in range(1, 21) for b in bc]
    paths += [f'Mixed_7a/{b}' for b in ('branch0_0', 'branch0_1', 'branch1_0', 'branch1_1',
                                        'branch2_0', 'branch2_1', 'branch2_2')]
    paths += [f'block8_{i}/{b}' for i in range(1, 11) for b in bc]
    return {path: index for index, path in enumerate(paths)}


_KERAS_ORDER = _keras_build_order()


def _keras(path: str) -> str:
    if path == 'fc':
        return 'predictions'
    module, part = path.rsplit('/', 1)
    if part == 'conv_linear':
        return f'{path.split("/")[0]}_conv'
    if module == 'Conv2d_7b_1x1':
        return 'conv_7b' if part == 'conv' else 'conv_7b_bn'
    prefix = 'conv2d' if part == 'conv' else 'batch_normalization'
    return keras_auto_name(prefix, _KERAS_ORDER[module])


register_layout(Layout('timm', 'inception_resnet_v2', 'inception_resnet_v2', _timm))
register_layout(Layout('keras', 'InceptionResNetV2', 'keras_inceptionresnetv2', _keras))
