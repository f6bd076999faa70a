"""torchvision's DenseNet-121/161/169/201: its layers live in a `features` Sequential of named
children (`features.denseblock1.denselayer1.conv1`); jaxconv flattens the block and layer into one
name (`denseblock1_denselayer1/conv1`) and keeps `classifier` outside."""

import re

from jaxconv.convert.layouts import Layout, register_layout


def _torchvision(path: str) -> str:
    if path == 'classifier':
        return path
    path = re.sub(r'^(denseblock\d+)_(denselayer\d+)', r'\1.\2', path)
    return 'features.' + path.replace('/', '.')


for _name in ('densenet121', 'densenet161', 'densenet169', 'densenet201'):
    register_layout(Layout('torchvision', _name, _name, _torchvision))
