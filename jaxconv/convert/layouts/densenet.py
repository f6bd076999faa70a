"""torchvision's DenseNet-121/161/169/201: its layers live in a `features` Sequential of named
children (`features.denseblock1.denselayer1.conv1`); jaxconv flattens the block and layer into one
name (`denseblock1_denselayer1/conv1`) and keeps `classifier` outside. Keras names the same
layers by stage number (conv2_block1_1_conv, pool2_conv, bn, predictions)."""

import re

from jaxconv.convert.layouts import Layout, register_layout


def _torchvision(path: str) -> str:
    if path == 'classifier':
        return path
    path = re.sub(r'^(denseblock\d+)_(denselayer\d+)', r'\1.\2', path)
    return 'features.' + path.replace('/', '.')


for _name in ('densenet121', 'densenet161', 'densenet169', 'densenet201'):
    register_layout(Layout('torchvision', _name, _name, _torchvision))


def _keras(path: str) -> str:
    """Keras' DenseNet: conv<block + 1>_block<layer>_{0_bn, 1_conv, 1_bn, 2_conv} for a dense
    layer, pool<block + 1>_{bn, conv} for a transition."""
    top = {'conv0': 'conv1_conv', 'norm0': 'conv1_bn', 'norm5': 'bn', 'classifier': 'predictions'}
    if path in top:
        return top[path]
    match = re.fullmatch(r'denseblock(\d)_denselayer(\d+)/(\w+)', path)
    if match:
        block, layer, name = match.groups()
        suffix = {'norm1': '0_bn', 'conv1': '1_conv', 'norm2': '1_bn', 'conv2': '2_conv'}[name]
        return f'conv{int(block) + 1}_block{layer}_{suffix}'
    block, name = re.fullmatch(r'transition(\d)/(\w+)', path).groups()
    return f'pool{int(block) + 1}_{"bn" if name == "norm" else "conv"}'


for _depth in ('121', '169', '201'):
    register_layout(Layout('keras', f'DenseNet{_depth}', f'keras_densenet{_depth}', _keras))
