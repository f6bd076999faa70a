"""torchvision's AlexNet into `alexnet_tv`: jaxconv keeps the Caffe names conv1..conv5, fc6..fc8;
torchvision's are positions in `features` (ReLUs and pools count) and `classifier` (dropouts
count). After the 6x6 adaptive pool FC6 reads a 6x6x256 map, flattened CHW by torchvision."""

from jaxconv.convert.layouts import Layout, chw_rows, register_layout

_TORCHVISION = {'conv1': 'features.0', 'conv2': 'features.3', 'conv3': 'features.6',
                'conv4': 'features.8', 'conv5': 'features.10',
                'fc6': ('classifier.1', chw_rows(256, 6, 6)), 'fc7': 'classifier.4',
                'fc8': 'classifier.6'}

register_layout(Layout('torchvision', 'alexnet', 'alexnet_tv', _TORCHVISION.get))
