"""torchvision's Inception v3 (`aux_logits=True`, `transform_input=False`): jaxconv uses its
module names verbatim (`Mixed_5b/branch5x5_1/conv` is `Mixed_5b.branch5x5_1.conv`; the `_1` is
part of the name here, not a Sequential index)."""

from jaxconv.convert.layouts import Layout, register_layout
from jaxconv.convert.layouts.xception import keras_auto_name
from jaxconv.models.inception import INCEPTION_V3_BLOCKS


def _torchvision(path: str) -> str:
    return path.replace('/', '.')


register_layout(Layout('torchvision', 'inception_v3', 'inception_v3', _torchvision))


def _keras_build_order() -> dict[str, int]:
    """jaxconv's conv-BN modules in the order Keras' InceptionV3 builds its unnamed ones (its
    `conv2d_bn` names none): the stem, then each mixed block branch by branch, as jaxconv."""
    branches = {
        'A': ('branch1x1', 'branch5x5_1', 'branch5x5_2', 'branch3x3dbl_1', 'branch3x3dbl_2',
              'branch3x3dbl_3', 'branch_pool'),
        'B': ('branch3x3', 'branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'),
        'C': ('branch1x1', 'branch7x7_1', 'branch7x7_2', 'branch7x7_3', 'branch7x7dbl_1',
              'branch7x7dbl_2', 'branch7x7dbl_3', 'branch7x7dbl_4', 'branch7x7dbl_5',
              'branch_pool'),
        'D': ('branch3x3_1', 'branch3x3_2', 'branch7x7x3_1', 'branch7x7x3_2', 'branch7x7x3_3',
              'branch7x7x3_4'),
        'E': ('branch1x1', 'branch3x3_1', 'branch3x3_2a', 'branch3x3_2b', 'branch3x3dbl_1',
              'branch3x3dbl_2', 'branch3x3dbl_3a', 'branch3x3dbl_3b', 'branch_pool'),
    }
    paths = ['Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1', 'Conv2d_4a_3x3']
    paths += [f'{name}/{branch}' for name, kind, _ in INCEPTION_V3_BLOCKS
              for branch in branches[kind]]
    return {path: index for index, path in enumerate(paths)}


_KERAS_ORDER = _keras_build_order()


def _keras(path: str) -> str:
    if path == 'fc':
        return 'predictions'
    module, part = path.rsplit('/', 1)
    prefix = 'conv2d' if part == 'conv' else 'batch_normalization'
    return keras_auto_name(prefix, _KERAS_ORDER[module])


register_layout(Layout('keras', 'InceptionV3', 'keras_inceptionv3', _keras))
