"""Blocks shared by several families; each is small and cites where it comes from."""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any  # A module factory such as a functools.partial of nn.Conv (flax's alias).

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'relu6': nn.relu6,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'swish': nn.swish,  # a.k.a. SiLU; EfficientNet's activation.
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks an activation up by name, naming the valid ones on a miss."""
    if name not in ACTIVATIONS:
        raise ValueError(f'unknown activation {name!r}; valid: {", ".join(sorted(ACTIVATIONS))}')
    return ACTIVATIONS[name]


def pool2d(kind: str, x: jax.Array, window: int, stride: int, padding: str = 'VALID') -> jax.Array:
    """Max or average pooling over the H and W axes of an NHWC array."""
    if kind == 'max':
        return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
    if kind == 'avg':
        return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=padding)
    raise ValueError(f'unknown pooling {kind!r}; valid: avg, max')


def check_min_input(model_name: str, x: jax.Array, min_size: int) -> None:
    """Fails at build time, in one line, when the input is smaller than the strides allow."""
    height, width = x.shape[1:3]
    if min(height, width) < min_size:
        raise ValueError(f'{model_name} needs inputs of at least {min_size}x{min_size} pixels; '
                         f'got {height}x{width} (raise dataset.image_size)')


def batch_norm(train: bool, *, momentum: float = 0.9, epsilon: float = 1e-5,
               dtype: Any = jnp.float32) -> ModuleDef:
    """The one BatchNorm factory all families use, built once per network and passed down.

    `momentum` is the running-average decay (flax convention: PyTorch's momentum 0.1 is 0.9 here,
    TF/Keras EfficientNet's 0.99 is 0.99). Statistics live in the `batch_stats` collection and,
    under jit on the `data` mesh, are computed over the whole global batch.
    """
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=momentum,
                             epsilon=epsilon, dtype=dtype)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Rounds a channel count to the nearest multiple of `divisor`, never losing more than 10%.

    The rule of MobileNetV2 (`_make_divisible` in the TF slim and torchvision code) and of
    EfficientNet's `round_filters`: round to the nearest multiple (at least `min_value`, default
    `divisor`), and add one more `divisor` when that fell below `round_limit` of the value.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded
