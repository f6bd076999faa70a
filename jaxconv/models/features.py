"""Named intermediate activations of any linen model: `features(model, variables, images, layer)`.

A layer is named by its module path, the '/'-joined names of the submodules leading to it
('c3', 'layer4_2', 'layer4_2/conv2'), and its activation is that module's output. Two names are
always there:

- 'pooled': the input of the classifier head, i.e. the features a linear probe or an embedding
  plot uses (LeNet's F6 outputs, ResNet's globally averaged last stage). The head is the last
  module with a kernel that outputs one value per class; when it is a convolution (NiN,
  SqueezeNet) its input map is averaged over space.
- 'logits': the model's output.

Nothing here knows a family: the activations are read with flax's method interception
(`nn.intercept_methods`), which sees every submodule's `__call__`, so a new family needs no code.
A module called more than once in one forward pass (weight sharing) is read at its last call.
"""

import dataclasses
import difflib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

POOLED = 'pooled'
LOGITS = 'logits'
_NAMES_SHOWN = 24  # Top-level names an error message lists; ResNet-50 has ~200 paths.


class LayerNotFoundError(ValueError):
    """A layer name that is not a module path of the model."""


@dataclasses.dataclass(frozen=True)
class _Call:
    """One submodule call seen in a forward pass."""

    path: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    is_head: bool  # Has a kernel and outputs one value per class (decided after the pass).


def _path(module: nn.Module) -> str:
    return '/'.join(str(part) for part in module.path)


def _array_or_none(x: Any) -> jax.Array | None:
    return x if isinstance(x, jax.Array) else None  # Tuples, masks and flags are not layers.


def _trace_calls(model: nn.Module, variables: Any,
                 images: Any) -> tuple[list[_Call], tuple[int, ...]]:
    """Every submodule call of a forward pass in call order, and the logits' shape; from shapes
    alone (`jax.eval_shape`: nothing is computed)."""
    calls: list[dict] = []

    def record(next_fun, args, kwargs, context):
        module = context.module
        # Dropout is the identity at eval time: its output is the layer before it, not a layer.
        if (context.method_name != '__call__' or not module.path or not args
                or isinstance(module, nn.Dropout)):
            return next_fun(*args, **kwargs)
        call = {'path': _path(module), 'input': _array_or_none(args[0])}
        calls.append(call)  # Before the call: a block comes before the layers inside it.
        output = next_fun(*args, **kwargs)
        call.update(output=_array_or_none(output),
                    has_kernel=module.has_variable('params', 'kernel'))
        return output

    def forward(variables, images):
        with nn.intercept_methods(record):
            logits = model.apply(variables, images, train=False)
        return logits, [(c['input'], c['output']) for c in calls]

    logits, arrays = jax.eval_shape(forward, variables, images)
    shapes = [(getattr(x, 'shape', ()), getattr(y, 'shape', ())) for x, y in arrays]
    head = max((i for i, (c, (_, out)) in enumerate(zip(calls, shapes, strict=True))
                if c['has_kernel'] and out[-1:] == logits.shape[-1:]), default=None)
    return [_Call(c['path'], x, y, i == head)
            for i, (c, (x, y)) in enumerate(zip(calls, shapes, strict=True))], logits.shape


def _head(calls: list[_Call]) -> _Call:
    for call in calls:
        if call.is_head:
            return call
    raise LayerNotFoundError("the model has no classifier head (a module with a kernel and one "
                             "output per class), so it has no 'pooled' layer; name a module path")


def list_layers(model: nn.Module, variables: Any,
                image_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """{layer name: activation shape of one image}: 'pooled', 'logits', then paths in call order.

    `variables` may be abstract (`jax.eval_shape(model.init, ...)`): only shapes are computed.
    """
    calls, logits_shape = _trace_calls(model, variables,
                                       jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    layers = {}
    if any(call.is_head for call in calls):
        layers[POOLED] = _head(calls).input_shape[-1:]  # Averaged over space if it is a map.
    layers[LOGITS] = logits_shape[1:]
    for call in calls:
        layers.setdefault(call.path, call.output_shape[1:])
    return layers


def _unknown_layer(layer: str, calls: list[_Call]) -> LayerNotFoundError:
    names = [POOLED, LOGITS, *dict.fromkeys(c.path for c in calls)]
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f'did you mean {", ".join(close)}? ' if close else ''
    shown = [n for n in names if '/' not in n][:_NAMES_SHOWN]
    more = (f' and {len(names) - len(shown)} more, e.g. '
            f'{next(n for n in names if n not in shown)} (list_layers() lists all)'
            if len(shown) < len(names) else '')
    return LayerNotFoundError(f'unknown layer {layer!r}; {hint}valid: {", ".join(shown)}{more}')


def features_and_logits(model: nn.Module, variables: Any, images: jax.Array, layer: str = POOLED,
                        perturbation: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(activation of `layer`, logits) from one eval-mode forward pass.

    `perturbation`, if given, is added to the activation before the rest of the network runs on
    it, so the gradient of anything computed from the logits with respect to `perturbation` (at
    zero) is its gradient with respect to the activation; Grad-CAM needs exactly that.
    """
    if layer == LOGITS:
        logits = model.apply(variables, images, train=False)
        if perturbation is not None:
            logits = logits + perturbation
        return logits, logits
    if layer == POOLED:  # Which module is the head is known only after a (shape-only) pass.
        target, read_input = _head(_trace_calls(model, variables, images)[0]).path, True
    else:
        target, read_input = layer, False
    seen: dict[str, jax.Array] = {}

    def read(next_fun, args, kwargs, context):
        if context.method_name != '__call__' or _path(context.module) != target:
            return next_fun(*args, **kwargs)
        if read_input:
            x = args[0]
            if perturbation is not None:
                x = x + perturbation
            seen['activation'] = x
            return next_fun(x, *args[1:], **kwargs)
        output = next_fun(*args, **kwargs)
        if perturbation is not None:
            output = output + perturbation
        seen['activation'] = output
        return output

    with nn.intercept_methods(read):
        logits = model.apply(variables, images, train=False)
    if 'activation' not in seen:
        raise _unknown_layer(layer, _trace_calls(model, variables, images)[0])
    activation = seen['activation']
    if read_input and activation.ndim == 4:  # A convolutional head: pool its input map.
        activation = activation.mean(axis=(1, 2))
    return activation, logits


def features(model: nn.Module, variables: Any, images: jax.Array,
             layer: str = POOLED) -> jax.Array:
    """The activation of `layer` (a module path, 'pooled' or 'logits') for NHWC `images`.

    Eval mode (BatchNorm running statistics, no dropout). Under `jax.jit` the layers after
    `layer` are dead code and compiled away.
    """
    return features_and_logits(model, variables, images, layer)[0]
