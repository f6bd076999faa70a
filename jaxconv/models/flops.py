"""Multiply-adds of a forward pass, counted analytically from shapes, for free via `jax.eval_shape`.

The count follows the convention of the published figures (ResNet-50 "4.1 GFLOPs", EfficientNet-B0
"0.39B FLOPs") and of torch's FlopCounterMode in ../shared/reference/params.md: one multiply-add
per weight use in convolutions and dense layers; BatchNorm, activations, pooling, residual adds,
SE scaling and biases are not counted. Every `nn.Conv` and `nn.Dense` call is intercepted, so
the count needs no per-family code.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def _layer_macs(module: nn.Module, output: jax.Array) -> int:
    """Multiply-adds of one conv or dense call, from its output shape and kernel size."""
    if isinstance(module, nn.Dense):
        return math.prod(output.shape[:-1]) * output.shape[-1] * _input_features(module)
    kernel = math.prod(module.kernel_size) * _input_features(module) // module.feature_group_count
    return math.prod(output.shape[:-1]) * output.shape[-1] * kernel


def _input_features(module: nn.Module) -> int:
    kernel = module.variables['params']['kernel']
    if isinstance(module, nn.Dense):
        return kernel.shape[0]
    return kernel.shape[-2] * module.feature_group_count  # Kernel is (..., in/groups, out).


def count_macs(model: nn.Module, resolution: int, channels: int = 3) -> int:
    """Multiply-adds of one eval-mode forward pass on a single resolution x resolution image."""
    total = 0

    def count(next_fun, args, kwargs, context):
        nonlocal total
        output = next_fun(*args, **kwargs)
        if context.method_name == '__call__' and isinstance(context.module, (nn.Conv, nn.Dense)):
            total += _layer_macs(context.module, output)
        return output

    def forward():
        image = jnp.zeros((1, resolution, resolution, channels), jnp.float32)
        variables = model.init(jax.random.key(0), image, train=False)
        with nn.intercept_methods(count):
            return model.apply(variables, image, train=False)

    jax.eval_shape(forward)
    return total
