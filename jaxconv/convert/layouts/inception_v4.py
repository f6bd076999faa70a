"""Inception-v4: timm's `inception_v4`.

timm keeps the whole trunk in one Sequential `features`; jaxconv names its parts as TF-slim does
(Conv2d_1a_3x3 ... Mixed_7d), in the same order. Inside the blocks the names are timm's, where a
Sequential's i-th child `branch1.0` is jaxconv's `branch1_0` (`dotted`), except in Inception-C,
whose `branch1_0`, `branch2_3a`, ... are plain attributes; the pooling branch's conv is the second
child of `branch3 = Sequential(AvgPool2d, conv)`.
"""

from jaxconv.convert.layouts import Layout, dotted, register_layout
from jaxconv.models.inception_v4 import block_names

TRUNK = ['Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Mixed_3a', 'Mixed_4a', 'Mixed_5a',
         *block_names('Mixed_5', 4), 'Mixed_6a', *block_names('Mixed_6', 7), 'Mixed_7a',
         *block_names('Mixed_7', 3)]
INCEPTION_C = set(block_names('Mixed_7', 3))


def _timm(path: str) -> str:
    if path == 'fc':
        return 'last_linear'
    top, *inner = path.split('/')
    module = f'features.{TRUNK.index(top)}'
    if len(inner) == 1:  # A stem conv's conv or bn.
        return f'{module}.{inner[0]}'
    branch, part = inner
    if branch == 'branch3':
        branch = 'branch3.1'
    elif top not in INCEPTION_C:
        branch = dotted(branch)
    return f'{module}.{branch}.{part}'


register_layout(Layout('timm', 'inception_v4', 'inception_v4', _timm))
