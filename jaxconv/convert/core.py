"""Moving a reference library's weights into jaxconv variables, leaf by leaf, with shape checks.

A reference model's state is a flat dict of arrays keyed by its own names: PyTorch's
`state_dict()` ('layer1.0.conv1.weight', 'layer1.0.bn1.running_mean') or Keras' weights
('conv1_conv/kernel', 'conv1_bn/moving_mean'). A *layout* says, for each jaxconv module path
('layer1_0/conv1'), which source module holds its weights; the leaf names and tensor layouts are
the framework's and are translated here once:

| jaxconv leaf           | PyTorch                   | Keras                          |
|------------------------|---------------------------|--------------------------------|
| conv `kernel` HWIO     | `weight` OIHW (transpose) | `kernel` HWIO (depthwise HWCM) |
| dense `kernel` (in,out)| `weight` (out,in)         | `kernel` (in,out)              |
| `bias`                 | `bias`                    | `bias` (`beta` in BatchNorm)   |
| BatchNorm `scale`      | `weight`                  | `gamma`                        |
| `batch_stats` mean/var | `running_mean/_var`       | `moving_mean/_variance`        |

Keras' SeparableConv2D holds both of its convolutions in one layer ('sep/depthwise_kernel',
'sep/pointwise_kernel'); `keras_state` lists them as two modules, 'sep/depthwise/kernel' and
'sep/pointwise/kernel', as PyTorch and jaxconv hold them.

A mismatch (a leaf with no source, a source left unused, a shape that differs) raises
`TransplantError` with a table of every offending key, never a bare traceback.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax
import numpy as np

FRAMEWORKS = ('torch', 'keras')
# What a module path maps to: the source module's name, None for "no source" (the module must
# have no leaves), (name, transform) where `transform` rewrites each converted array first, or
# {jaxconv leaf: source key} where the source's leaf names are not the framework's usual ones
# (Keras' SeparableConv2D holds 'depthwise_kernel' and 'pointwise_kernel' in one layer).
SourceModule = (str | None | tuple[str, Callable[[str, np.ndarray], np.ndarray]]
                | Mapping[str, str])

_TORCH_LEAVES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
                 'var': 'running_var'}
_KERAS_LEAVES = {'kernel': 'kernel', 'scale': 'gamma', 'bias': 'bias', 'mean': 'moving_mean',
                 'var': 'moving_variance'}
# Source entries that carry no weights.
_IGNORED_SUFFIXES = ('num_batches_tracked', 'seed_generator_state')


class TransplantError(ValueError):
    """The source and the jaxconv model disagree; the message tabulates every offending key."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        width = max(len(key) for key, _, _ in problems)
        lines = [f'  {key:<{width}}  {kind}: {detail}' for key, kind, detail in problems]
        super().__init__(f'{len(problems)} weight(s) do not match the jaxconv model:\n'
                         + '\n'.join(lines))


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """{'params/layer1_0/conv1/kernel': array, ...} from a nested variables dict."""
    return {'/'.join(path): leaf for path, leaf in flax.traverse_util.flatten_dict(
        flax.core.unfreeze(tree)).items()}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    return flax.traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})


def _is_norm(module_leaves: Iterable[str]) -> bool:
    return any(leaf in ('scale', 'mean', 'var') for leaf in module_leaves)


def _convert(array: np.ndarray, target_shape: tuple[int, ...], leaf: str,
             framework: str) -> np.ndarray:
    """The source array in jaxconv's layout (see the table in the module docstring)."""
    array = np.asarray(array, np.float32)
    if leaf != 'kernel':
        return array
    if framework == 'torch':
        if array.ndim == 4:
            return array.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
        if array.ndim == 2:
            return array.T  # (out, in) -> (in, out).
        return array
    if array.ndim == 4 and len(target_shape) == 4 and array.shape != target_shape \
            and target_shape[2] == 1:
        # Keras' depthwise kernel is (kh, kw, channels, multiplier); a flax grouped conv with one
        # group per channel holds (kh, kw, 1, channels * multiplier), channel-major like Keras.
        kh, kw, channels, multiplier = array.shape
        return array.reshape(kh, kw, 1, channels * multiplier)
    return array


def transplant(template: Mapping[str, Any], source: Mapping[str, np.ndarray],
               source_module: Callable[[str], SourceModule], framework: str) -> dict[str, Any]:
    """jaxconv variables shaped like `template`, with every leaf taken from `source`.

    `template` is the model's variables (or `jax.eval_shape` of them): only shapes are read.
    `source_module(path)` names the source module of a jaxconv module path such as
    'layer1_0/downsample/conv' (collections stripped). `framework` is 'torch' or 'keras'.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f'unknown framework {framework!r}; valid: {", ".join(FRAMEWORKS)}')
    leaf_names = _TORCH_LEAVES if framework == 'torch' else _KERAS_LEAVES
    separator = '.' if framework == 'torch' else '/'
    flat = flatten(template)
    modules: dict[str, list[str]] = {}
    for key in flat:
        _, *module, leaf = key.split('/')
        modules.setdefault('/'.join(module), []).append(leaf)

    problems: list[tuple[str, str, str]] = []
    used: set[str] = set()
    result = {}
    for key, target in flat.items():
        collection, *module, leaf = key.split('/')
        module_path = '/'.join(module)
        mapped = source_module(module_path)
        transform = None
        if isinstance(mapped, tuple):
            mapped, transform = mapped
        if mapped is None:
            problems.append((key, 'no source', f'the layout maps {module_path!r} to nothing'))
            continue
        if isinstance(mapped, Mapping):
            source_key = mapped.get(leaf, f'<no source for leaf {leaf!r}>')
        else:
            source_leaf = leaf_names[leaf]
            if framework == 'keras' and leaf == 'bias' and _is_norm(modules[module_path]):
                source_leaf = 'beta'
            source_key = f'{mapped}{separator}{source_leaf}'
        if source_key not in source:
            problems.append((key, 'missing', f'no {source_key!r} in the source'))
            continue
        used.add(source_key)
        array = _convert(source[source_key], tuple(target.shape), leaf, framework)
        if transform is not None:
            array = transform(leaf, array)
        if tuple(array.shape) != tuple(target.shape):
            problems.append((key, 'shape', f'{source_key!r} is {tuple(array.shape)} after '
                             f'conversion, jaxconv needs {tuple(target.shape)}'))
            continue
        result[key] = array
    for source_key in sorted(set(source) - used):
        if not source_key.endswith(_IGNORED_SUFFIXES):
            problems.append((source_key, 'unused', 'no jaxconv leaf takes this source weight'))
    if problems:
        raise TransplantError(problems)
    return unflatten(result)


def torch_state(module: Any) -> dict[str, np.ndarray]:
    """A torch module's `state_dict()` as float32 numpy arrays."""
    return {key: value.detach().cpu().float().numpy()
            for key, value in module.state_dict().items()}


def keras_state(model: Any) -> dict[str, np.ndarray]:
    """A Keras model's weights keyed 'layer_name/variable_name', as numpy arrays.

    Layer names are unique in a Keras model; a weight's `path` also holds the name scopes the
    layer was built under (NASNet's 'normal_A_block_0/block_1/...'), which say nothing more. A
    separable conv's 'depthwise_kernel' and 'pointwise_kernel' become 'depthwise/kernel' and
    'pointwise/kernel', the two convolutions jaxconv builds for it.
    """
    state = {}
    for layer in model.layers:
        for weight in layer.weights:
            name = weight.name
            if name in ('depthwise_kernel', 'pointwise_kernel'):  # Only SeparableConv2D's.
                name = name.replace('_kernel', '/kernel')
            state[f'{layer.name}/{name}'] = np.asarray(weight.numpy())
    return state
