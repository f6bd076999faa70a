"""Xception: timm's `legacy_xception` and Keras' `Xception`.

jaxconv's modules: `conv1`, `conv2` (conv + bn), `block{i}/sepconv{k}` (depthwise, pointwise, bn),
`block{i}/shortcut` (conv + bn), `conv3`, `conv4` (separable, with bn) and `fc`.
- timm keeps each block's layers in one Sequential `rep` that also holds the ReLUs:
  [ReLU, SeparableConv2d, BatchNorm2d] per separable conv, without the first ReLU in block1; its
  separable conv is (`conv1` depthwise, `pointwise`); the shortcut is `skip` + `skipbn`.
- Keras numbers blocks from the stem (its block2 is jaxconv's block1; block14 holds conv3/conv4),
  names BN layers `<conv>_bn`, and leaves the shortcut convs and BNs unnamed: the session's
  `conv2d`, `conv2d_1`, ... in the order the strided blocks are built.
"""

from jaxconv.convert.layouts import Layout, register_layout

STRIDED_BLOCKS = (1, 2, 3, 12)  # Blocks with a projection shortcut, in build order.


def keras_auto_name(prefix: str, index: int) -> str:
    """Keras' name of the index-th unnamed layer of a kind in a session: conv2d, conv2d_1, ..."""
    return prefix if index == 0 else f'{prefix}_{index}'


def _timm(path: str) -> str:
    parts = path.split('/')
    if parts[0] in ('conv1', 'conv2') and len(parts) == 2:
        return {'conv': parts[0], 'bn': 'bn' + parts[0][-1]}[parts[1]]
    if parts[0] in ('conv3', 'conv4'):
        return {'depthwise': f'{parts[0]}.conv1', 'pointwise': f'{parts[0]}.pointwise',
                'bn': 'bn' + parts[0][-1]}[parts[1]]
    if parts[0] == 'fc':
        return 'fc'
    block, layer, part = parts
    if layer == 'shortcut':
        return f'{block}.skip' if part == 'conv' else f'{block}.skipbn'
    index = 3 * (int(layer.removeprefix('sepconv')) - 1) + (0 if block == 'block1' else 1)
    separable = f'{block}.rep.{index}'
    return {'depthwise': f'{separable}.conv1', 'pointwise': f'{separable}.pointwise',
            'bn': f'{block}.rep.{index + 1}'}[part]


def _keras(path: str) -> str:
    parts = path.split('/')
    if parts[0] in ('conv1', 'conv2'):
        return f'block1_{parts[0]}' + ('_bn' if parts[1] == 'bn' else '')
    if parts[0] in ('conv3', 'conv4'):
        layer = f'block14_sepconv{int(parts[0][-1]) - 2}'
        return f'{layer}_bn' if parts[1] == 'bn' else f'{layer}/{parts[1]}'
    if parts[0] == 'fc':
        return 'predictions'
    block, layer, part = parts
    number = int(block.removeprefix('block'))
    if layer == 'shortcut':
        index = STRIDED_BLOCKS.index(number)
        return keras_auto_name('conv2d' if part == 'conv' else 'batch_normalization', index)
    name = f'block{number + 1}_{layer}'
    return f'{name}_bn' if part == 'bn' else f'{name}/{part}'


register_layout(Layout('timm', 'legacy_xception', 'xception', _timm))
register_layout(Layout('keras', 'Xception', 'keras_xception', _keras))
