"""torchvision's VGG (with and without BatchNorm): jaxconv names every layer by its torchvision
index (`features_<i>`, `classifier_<i>`), so paths map by `dotted`; the first FC reads the 7x7x512
map of the adaptive pool, which torchvision flattens CHW."""

from jaxconv.convert.layouts import Layout, chw_rows, dotted, register_layout


def _torchvision(path: str):
    if path == 'classifier_0':
        return dotted(path), chw_rows(512, 7, 7)
    return dotted(path)


for _name in ('vgg11', 'vgg13', 'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn'):
    register_layout(Layout('torchvision', _name, _name, _torchvision))
