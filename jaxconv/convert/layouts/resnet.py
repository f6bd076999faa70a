"""ResNet, ResNet-D, SE-ResNet(X)t, ResNeXt, Wide ResNet and ResNet-RS: torchvision and timm.

jaxconv's ResNet keeps torchvision's module names (`conv1`, `bn1`, `layer{i}.{j}.conv{k}`,
`downsample`, `fc`), so most paths map by `dotted`. What differs is inside Sequentials:
- timm's deep stem is `conv1 = Sequential(conv, bn, act, conv, bn, act, conv)`: jaxconv's
  conv1_0/bn1_0/conv1_1/bn1_1/conv1 are its children 0, 1, 3, 4, 6;
- ResNet-RS's stem pool is `maxpool = Sequential(conv, bn, act)`;
- the shortcut is `downsample = Sequential(conv, bn)`, or `(AvgPool, conv, bn)` with avg_down.
"""

import re

from jaxconv.convert.layouts import Layout, dotted, register_layout

_DEEP_STEM = {'conv1_0': 'conv1.0', 'bn1_0': 'conv1.1', 'conv1_1': 'conv1.3', 'bn1_1': 'conv1.4',
              'stem_pool_conv': 'maxpool.0', 'stem_pool_bn': 'maxpool.1'}


def _torch_module(deep_stem: bool, avg_down: bool):
    def source_module(path: str) -> str:
        if deep_stem and path == 'conv1':
            return 'conv1.6'
        if path in _DEEP_STEM:
            return _DEEP_STEM[path]
        if path.endswith(('downsample/conv', 'downsample/bn')):
            block, part = path.rsplit('/downsample/', 1)
            index = {'conv': 0, 'bn': 1}[part] + (1 if avg_down else 0)
            return f'{dotted(block)}.downsample.{index}'
        return dotted(path)

    return source_module


_PLAIN = _torch_module(deep_stem=False, avg_down=False)
_RESNET_D = _torch_module(deep_stem=True, avg_down=True)

for _name in ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50_32x4d',
              'resnext101_32x8d', 'wide_resnet50_2', 'wide_resnet101_2'):
    register_layout(Layout('torchvision', _name, _name, _PLAIN))
for _reference, _model in (('resnet18', 'resnet18'), ('resnet50', 'resnet50'),
                           ('resnet101', 'resnet101'), ('resnet152', 'resnet152'),
                           ('resnet200', 'resnet200'), ('seresnet50', 'seresnet50'),
                           ('seresnext50_32x4d', 'seresnext50_32x4d')):
    register_layout(Layout('timm', _reference, _model, _PLAIN))
for _depth in ('18', '34', '50', '101', '152', '200'):
    register_layout(Layout('timm', f'resnet{_depth}d', f'resnet{_depth}d', _RESNET_D))
for _depth in ('50', '101', '152', '200', '270', '350', '420'):
    register_layout(Layout('timm', f'resnetrs{_depth}', f'resnet_rs{_depth}', _RESNET_D))


def _keras_v1(path: str) -> str:
    """Keras' ResNet: `conv<stage + 1>_block<j + 1>_<k>_conv/_bn`, k = 0 for the projection."""
    if path in ('conv1', 'bn1'):
        return {'conv1': 'conv1_conv', 'bn1': 'conv1_bn'}[path]
    if path == 'fc':
        return 'predictions'
    stage, block, rest = re.fullmatch(r'layer(\d)_(\d+)/(.+)', path).groups()
    prefix = f'conv{int(stage) + 1}_block{int(block) + 1}'
    if rest.startswith('downsample/'):
        return f'{prefix}_0_{rest.split("/")[1]}'
    kind, k = re.fullmatch(r'(conv|bn)(\d)', rest).groups()
    return f'{prefix}_{k}_{kind}'


# preact_resnet.PreActBlock's names -> Keras' ResNetV2 block2 suffixes.
_KERAS_V2_BLOCK = {'bn1': 'preact_bn', 'downsample': '0_conv', 'conv1': '1_conv', 'bn2': '1_bn',
                   'conv2': '2_conv', 'bn3': '2_bn', 'conv3': '3_conv'}


def _keras_v2(path: str) -> str:
    top = {'conv1': 'conv1_conv', 'bn_final': 'post_bn', 'fc': 'predictions'}
    if path in top:
        return top[path]
    stage, block, rest = re.fullmatch(r'layer(\d)_(\d+)/(.+)', path).groups()
    return f'conv{int(stage) + 1}_block{int(block) + 1}_{_KERAS_V2_BLOCK[rest]}'


for _depth in ('50', '101', '152'):
    register_layout(Layout('keras', f'ResNet{_depth}', f'keras_resnet{_depth}', _keras_v1))
    register_layout(Layout('keras', f'ResNet{_depth}V2', f'keras_resnet{_depth}v2', _keras_v2))
