"""Class-score maximisation: an input optimised to make one class's score large.

Simonyan, Vedaldi & Zisserman 2014 ("Deep Inside Convolutional Networks", Sec. 2, Eq. 1) find
    I* = argmax_I  S_c(I) - lambda * ||I||_2^2
by gradient ascent from the zero (mean) image, S_c the unnormalised class score. Alone this gives
high-frequency patterns; Yosinski et al. 2015 ("Understanding Neural Networks Through Deep
Visualization", Sec. 3) add a Gaussian blur of the image every few steps, which we do too. The
image is also kept inside the valid pixel range.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of NHWC images, per channel, with edge replication."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1) / sigma) ** 2)
    taps = taps / taps.sum()
    padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='edge')
    rows = sum(taps[i] * padded[:, i:i + images.shape[1]] for i in range(2 * radius + 1))
    return sum(taps[i] * rows[:, :, i:i + images.shape[2]] for i in range(2 * radius + 1))


@functools.partial(jax.jit,
                   static_argnames=('model', 'image_shape', 'steps', 'blur_every', 'blur_sigma'))
def maximize_class(model: nn.Module, variables: Any, classes: jax.Array,
                   image_shape: tuple[int, int, int], *, steps: int = 200,
                   step_size: float = 0.05, l2: float = 0.03, blur_every: int = 2,
                   blur_sigma: float = 0.7, low: jax.Array | float = -jnp.inf,
                   high: jax.Array | float = jnp.inf) -> jax.Array:
    """One image per entry of `classes`, in normalised units, after `steps` ascent steps.

    Each step moves the image along the gradient of S_c - l2 * ||I||^2, divided by the gradient's
    root mean square so that `step_size` is in normalised pixel units whatever the model's
    score scale. `low`/`high`: the valid pixel range (per channel), clipped to after each step.
    The defaults gave the least noisy digits of a small grid searched by eye on LeNet-5.
    """
    def objective(image: jax.Array, label: jax.Array) -> jax.Array:
        score = model.apply(variables, image[None], train=False)[0, label]
        return score - l2 * jnp.sum(image ** 2)

    gradient = jax.vmap(jax.grad(objective))

    def step(i: jax.Array, images: jax.Array) -> jax.Array:
        g = gradient(images, classes)
        g = g / (jnp.sqrt(jnp.mean(g ** 2, axis=(1, 2, 3), keepdims=True)) + 1e-12)
        images = jnp.clip(images + step_size * g, low, high)
        if blur_every > 0:
            images = jax.lax.cond((i + 1) % blur_every == 0,
                                  lambda x: gaussian_blur(x, blur_sigma), lambda x: x, images)
        return images

    start = jnp.zeros((len(classes), *image_shape), jnp.float32)  # The dataset-mean image.
    return jax.lax.fori_loop(0, steps, step, start)
