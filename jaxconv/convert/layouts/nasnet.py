"""NASNet-A: timm's `nasnetalarge` and Keras' `NASNetMobile` / `NASNetLarge`.

jaxconv keeps timm's module names, so timm maps by swapping '/' for '.' (the factorised
reduction's convs sit in Sequentials: `path_1.conv`). Keras names every layer after its cell's
block id (`0`..`N-1`, `reduce_N`, `N+1`..`2N`, `reduce_2N`, `2N+1`..`3N`; stem cells `stem_1`,
`stem_2`) and after the op's place in Fig. 4 (`normal_left1`, `reduction_right3`, ...); one
SeparableConv2D holds both the depthwise and the pointwise kernel.
"""

from collections.abc import Callable

from jaxconv.convert.core import SourceModule
from jaxconv.convert.layouts import Layout, register_layout

# Which Keras separable block computes each of jaxconv's (timm's) branches, per cell kind.
_KERAS_BRANCHES = {
    'normal': {'comb_iter_0_left': 'left1', 'comb_iter_0_right': 'right1',
               'comb_iter_1_left': 'left2', 'comb_iter_1_right': 'right2',
               'comb_iter_4_left': 'left5'},
    'reduction': {'comb_iter_0_left': 'left1', 'comb_iter_0_right': 'right1',
                  'comb_iter_1_right': 'right2', 'comb_iter_2_right': 'right3',
                  'comb_iter_4_left': 'left4'},
}


def _timm_module(path: str) -> str:
    if path.endswith(('/path_1', '/path_2')):
        return f'{path.replace("/", ".")}.conv'
    return path.replace('/', '.')


def _keras_block(cell: str, num_cells: int) -> tuple[str, str]:
    """(cell kind, Keras block id) of a jaxconv cell name, for `num_cells` cells per stack."""
    if cell.startswith('cell_stem_'):
        return 'reduction', f'stem_{int(cell[-1]) + 1}'
    if cell.startswith('reduction_cell_'):
        return 'reduction', f'reduce_{(int(cell.rsplit("_", 1)[1]) + 1) * num_cells}'
    index = int(cell.rsplit('_', 1)[1])  # cell_{i}; Keras skips one id per reduction before it.
    return 'normal', str(index if index < num_cells else index + 1)


def keras_source_module(num_cells: int) -> Callable[[str], SourceModule]:
    """The Keras layout of a NASNet with `num_cells` normal cells per stack."""
    def source_module(path: str) -> SourceModule:
        if path.startswith('conv0/'):
            return {'conv0/conv': 'stem_conv1', 'conv0/bn': 'stem_bn1'}[path]
        if path == 'last_linear':
            return 'predictions'
        cell, *rest = path.split('/')
        kind, block = _keras_block(cell, num_cells)
        rest = '/'.join(rest)
        fixed = {'conv_1x1/conv': f'{kind}_conv_1_{block}', 'conv_1x1/bn': f'{kind}_bn_1_{block}',
                 'conv_prev_1x1/conv': f'adjust_conv_projection_{block}',
                 'conv_prev_1x1/bn': f'adjust_bn_{block}', 'path_1': f'adjust_conv_1_{block}',
                 'path_2': f'adjust_conv_2_{block}', 'final_path_bn': f'adjust_bn_{block}'}
        if rest in fixed:
            return fixed[rest]
        branch, part, *leaf = rest.split('/')  # comb_iter_0_left/separable_1/depthwise_conv2d
        name = f'{kind}_{_KERAS_BRANCHES[kind][branch]}_{block}'
        i = part[-1]
        if part.startswith('bn_sep_'):
            return f'separable_conv_{i}_bn_{name}'
        conv = {'depthwise_conv2d': 'depthwise', 'pointwise_conv2d': 'pointwise'}[leaf[0]]
        return f'separable_conv_{i}_{name}/{conv}'

    return source_module


register_layout(Layout('timm', 'nasnetalarge', 'nasnetalarge', _timm_module))
register_layout(Layout('keras', 'NASNetMobile', 'keras_nasnetmobile', keras_source_module(4)))
register_layout(Layout('keras', 'NASNetLarge', 'keras_nasnetlarge', keras_source_module(6)))
