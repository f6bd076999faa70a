"""torchvision's GoogLeNet (`aux_logits=True`, `transform_input=False`) into `googlenet`: the
module names are torchvision's (`inception3a/branch2_1` is `inception3a.branch2.1`); each aux
head's fc1 reads the 4x4x128 map of its adaptive pool, flattened CHW by torchvision."""

from jaxconv.convert.layouts import Layout, chw_rows, dotted, register_layout


def _torchvision(path: str):
    if path in ('aux1/fc1', 'aux2/fc1'):
        return dotted(path), chw_rows(128, 4, 4)
    return dotted(path)


register_layout(Layout('torchvision', 'googlenet', 'googlenet', _torchvision))
