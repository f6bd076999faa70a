"""ShuffleNet v2: torchvision's `shufflenet_v2_x0_5` ... `x2_0`.

torchvision builds every conv - BN (- ReLU) as children of one Sequential: `conv1.0/1`,
`conv5.0/1`, and in each unit `branch1.{0,1,2,3}` and `branch2.{0,1,3,4,5,6}` (the ReLUs take the
indices in between). jaxconv's ConvNormAct units `branch1_0`, `branch1_1`, `branch2_0..2` each
hold one conv and its BN.
"""

from jaxconv.convert.layouts import Layout, dotted, register_layout

# jaxconv ConvNormAct unit -> torchvision index of (its conv, its BN) in the branch Sequential.
_UNIT_INDICES = {'branch1_0': (0, 1), 'branch1_1': (2, 3), 'branch2_0': (0, 1),
                 'branch2_1': (3, 4), 'branch2_2': (5, 6)}


def _torchvision_module(path: str) -> str:
    if path == 'fc':
        return 'fc'
    *parents, unit, part = path.split('/')  # ['stage2_0', 'branch1_0', 'bn'], ['conv1', 'conv']
    sequential, indices = unit, (0, 1)  # conv1, conv5
    if unit in _UNIT_INDICES:
        sequential, indices = unit.rsplit('_', 1)[0], _UNIT_INDICES[unit]
    index = indices[1] if part == 'bn' else indices[0]
    return '.'.join([dotted(parent) for parent in parents] + [sequential, str(index)])


for _width in ('0_5', '1_0', '1_5', '2_0'):
    register_layout(Layout('torchvision', f'shufflenet_v2_x{_width}', f'shufflenet_v2_x{_width}',
                           _torchvision_module))
