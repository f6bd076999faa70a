"""torchvision's SqueezeNet 1.0 and 1.1: jaxconv names layers by their torchvision index."""

from jaxconv.convert.layouts import Layout, dotted, register_layout

for _name in ('squeezenet1_0', 'squeezenet1_1'):
    register_layout(Layout('torchvision', _name, _name, dotted))
