"""torchvision's Inception v3 (`aux_logits=True`, `transform_input=False`): jaxconv uses its
module names verbatim (`Mixed_5b/branch5x5_1/conv` is `Mixed_5b.branch5x5_1.conv`; the `_1` is
part of the name here, not a Sequential index)."""

from jaxconv.convert.layouts import Layout, register_layout


def _torchvision(path: str) -> str:
    return path.replace('/', '.')


register_layout(Layout('torchvision', 'inception_v3', 'inception_v3', _torchvision))
