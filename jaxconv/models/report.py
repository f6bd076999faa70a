"""A model's layer table, like the case-study slides: layer, type, output size, filter size /
stride, parameters per layer; then the total parameters and multiply-adds.

    python -m jaxconv.models.report vgg16 [--resolution 224] [--num-classes 1000] [--channels 3]

It traces one eval-mode forward pass to a jaxpr (abstract shapes only, like `jax.eval_shape`: no
compute, so VGG costs nothing) and reads the rows off it: every convolution, dense layer, pooling
window, global pooling, concatenation, channel-wise LRN and parameterised norm layer, named by the
path of the module that ran it (flax records module names in each equation's name stack). Nothing
here knows a family, so every registered model gets a table. Multiply-adds come from
`flops.count_macs`, an analytic count of conv and dense layers only.
"""

import argparse
import dataclasses
import math
import sys
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models import create_model
from jaxconv.models.flops import count_macs
from jaxconv.models.layers import convolution_primitives


@dataclasses.dataclass
class Row:
    layer: str
    kind: str
    output: tuple[int, ...]
    filter: str = ''
    params: int = 0


def _equations(jaxpr: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
    """(module path, equation) pairs in execution order, descending into nested jaxprs."""
    for eqn in jaxpr.eqns:
        stack = str(eqn.source_info.name_stack)
        path = '/'.join(p for p in (prefix, stack) if p)
        nested = [v for v in eqn.params.values() if hasattr(v, 'eqns') or hasattr(v, 'jaxpr')]
        nested += [j for v in eqn.params.values() if isinstance(v, (tuple, list))
                   for j in v if hasattr(j, 'eqns') or hasattr(j, 'jaxpr')]
        if nested:
            for sub in nested:
                yield from _equations(getattr(sub, 'jaxpr', sub), path)
        else:
            yield path, eqn


def _own_params(params: dict, path: tuple[str, ...]) -> dict | None:
    """The parameter arrays held directly by the module at `path` (not by its children)."""
    node = params
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    own = {k: v for k, v in node.items() if not isinstance(v, dict)}
    return own or None


def _size(shape: tuple[int, ...]) -> str:
    return 'x'.join(str(d) for d in shape[1:])  # Drop the batch axis.


def layer_rows(model: nn.Module, resolution: int, channels: int = 3) -> tuple[list[Row], dict]:
    """The table rows of one eval-mode forward pass, and the model's params (init for training)."""
    image = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    rngs = {name: jax.random.key(0) for name in ('params', 'dropout', 'drop_path')}
    variables = jax.eval_shape(lambda x: model.init(rngs, x, train=True), image)
    params = variables.get('params', {})
    norm_paths = set()
    for path, _ in jax.tree_util.tree_flatten_with_path(variables.get('batch_stats', {}))[0]:
        norm_paths.add(tuple(k.key for k in path[:-1]))
    with convolution_primitives():  # Rows are found by their conv primitives, depthwise too.
        closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, image)

    rows: list[Row] = []
    seen: set[tuple[str, ...]] = set()
    for stack, eqn in _equations(closed.jaxpr):
        # The first entry is the top module's class name; 'Class.method' entries mark calls of a
        # module's other methods (the shared head, `ConvNet.classify`), not submodules.
        path = tuple(p for p in stack.split('/')[1:] if '.' not in p)
        name = '/'.join(path)
        under = f'{name}/' if name else ''  # Pools and LRNs are functions: named by their module.
        prim = eqn.primitive.name
        out = tuple(eqn.outvars[0].aval.shape) if eqn.outvars else ()
        own = _own_params(params, path) if path else None
        count = sum(math.prod(v.shape) for v in own.values()) if own else 0
        first = own is not None and path not in seen
        row = None
        if prim == 'conv_general_dilated':
            kernel = eqn.invars[1].aval.shape  # HWIO.
            groups = eqn.params['feature_group_count']
            kind = 'Conv' if groups == 1 else ('DWConv' if kernel[2] == 1 else f'Conv g{groups}')
            stride = 'x'.join(str(s) for s in eqn.params['window_strides'])
            stride = stride.split('x')[0] if len(set(eqn.params['window_strides'])) == 1 else stride
            row = Row(name, kind, out, f'{kernel[0]}x{kernel[1]}/{stride}')
        elif prim == 'dot_general' and own is not None and 'kernel' in own:
            row = Row(name, 'Dense', out)
        elif prim.startswith('reduce_window'):
            window, strides = eqn.params['window_dimensions'], eqn.params['window_strides']
            if window[1:3] == (1, 1) and window[3] > 1:
                row = Row(under + 'lrn', 'LRN', out, f'{window[3]} channels')
            else:
                kind = 'MaxPool' if prim == 'reduce_window_max' else 'AvgPool'
                row = Row(under + 'pool', kind, out, f'{window[1]}x{window[2]}/{strides[1]}')
                last = rows[-1] if rows else None
                # avg_pool without padding in the count pools a ones map too: same window, skip it.
                if (last and last.kind == kind and last.layer == row.layer
                        and last.filter == row.filter and last.output[:3] == out[:3]):
                    continue
        elif prim in ('reduce_sum', 'reduce_max') and len(eqn.invars[0].aval.shape) == 4 \
                and tuple(eqn.params['axes']) == (1, 2):
            kind = 'GlobalAvgPool' if prim == 'reduce_sum' else 'GlobalMaxPool'
            row = Row(under + 'pool', kind, out)
        elif prim == 'concatenate' and len(out) == 4 and eqn.params['dimension'] == 3:
            row = Row(under + 'concat', 'Concat', out)
        elif first:  # A parameterised layer without conv or matmul: BatchNorm, LayerNorm, scales.
            row = Row(name, 'BatchNorm' if path in norm_paths else 'Norm/Scale', out)
        elif rows and path in seen and rows[-1].layer == name and rows[-1].kind in (
                'BatchNorm', 'Norm/Scale'):
            rows[-1].output = out if len(out) >= len(rows[-1].output) else rows[-1].output
            continue
        if row is None:
            continue
        if first:
            row.params = count
            seen.add(path)
        rows.append(row)
    return rows, params


def report(name: str, resolution: int | None = None, num_classes: int = 1000,
           channels: int = 3, **overrides: Any) -> str:
    """The layer table of the registered model `name`, as text."""
    model = create_model(name, num_classes=num_classes, **overrides)
    resolution = resolution or model.default_image_size
    rows, params = layer_rows(model, resolution, channels)
    total = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    macs = count_macs(model, resolution, channels)

    header = ('layer', 'type', 'output', 'filter/stride', 'params')
    table = [header] + [(r.layer, r.kind, _size(r.output), r.filter,
                         f'{r.params:,}' if r.params else '') for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [f'{name} on {resolution}x{resolution}x{channels} input, {num_classes} classes', '']
    for line in table:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths[:-1], strict=True)]
        lines.append('  '.join(cells + [line[-1].rjust(widths[-1])]).rstrip())
    shown = sum(r.params for r in rows)
    lines.append('')
    lines.append(f'total params: {total:,}')
    if shown != total:
        lines.append(f'  of which {total - shown:,} in layers that run only in training '
                     '(auxiliary heads) and have no row above')
    scaled = f'{macs / 1e9:.3f} G' if macs >= 1e8 else f'{macs / 1e6:.3f} M'
    lines.append(f'multiply-adds: {macs:,} ({scaled}; analytic count of conv and dense layers '
                 'only, eval mode, one image: jaxconv.models.flops.count_macs)')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m jaxconv.models.report',
                                     description='Print the layer table of a registered model.')
    parser.add_argument('name', help='a name from jaxconv.models.list_models()')
    parser.add_argument('--resolution', type=int, default=None,
                        help="input side in pixels (default: the model's native size, else 224)")
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--channels', type=int, default=3)
    args = parser.parse_args(argv)
    try:
        print(report(args.name, args.resolution, args.num_classes, args.channels))
    except (ValueError, TypeError) as e:  # Unknown name, too-small input, bad override.
        print(f'report: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
