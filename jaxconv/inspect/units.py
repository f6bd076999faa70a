"""What units respond to: first-layer filters, activation maps, and the eval patches that excite
a channel most (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
Fig. 2's image patches beside each feature's projection; Krizhevsky et al. 2012, Fig. 3's filters).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxconv.models.features import features, list_layers


def conv_kernels(model: nn.Module, variables: Any, image_shape: tuple[int, int, int],
                 layer: str | None = None) -> tuple[str, np.ndarray]:
    """(layer, kernel (kh, kw, in, out)) of `layer`, or of the first convolution the input meets.

    The first convolution is found in call order, so it is the stem whatever the family names it.
    """
    params = variables['params']
    names = [layer] if layer else list(list_layers(model, variables, image_shape))
    for name in names:
        node = params
        for part in name.split('/'):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        kernel = node.get('kernel') if isinstance(node, dict) else None
        if kernel is not None and kernel.ndim == 4:
            return name, np.asarray(kernel)
    if layer:
        raise ValueError(f'layer {layer!r} is not a convolution (no 4-D kernel); pick a conv '
                         'layer, or leave --layer out for the first one')
    raise ValueError('the model has no convolution')


@functools.partial(jax.jit, static_argnames=('model', 'layer'))
def activations(model: nn.Module, variables: Any, images: jax.Array, layer: str) -> jax.Array:
    """The activation of `layer` for `images` (eval mode)."""
    return features(model, variables, images, layer)


def channel_maxima(model: nn.Module, variables: Any, images: np.ndarray, layer: str,
                   batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(values (N, C), positions (N, C, 2)): each image's strongest response per channel of an
    NHWC `layer` and the (row, col) of the unit that gave it."""
    @jax.jit
    def batch_maxima(variables: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        maps = features(model, variables, images, layer)
        if maps.ndim != 4:
            raise ValueError(f'layer {layer!r} has no spatial map (shape {maps.shape}); pick a '
                             'convolutional layer')
        flat = maps.reshape(maps.shape[0], -1, maps.shape[-1])
        index = flat.argmax(axis=1)
        return flat.max(axis=1), jnp.stack(jnp.unravel_index(index, maps.shape[1:3]), axis=-1)

    values, positions = [], []
    for start in range(0, len(images), batch_size):
        value, position = batch_maxima(variables, images[start:start + batch_size])
        values.append(np.asarray(value))
        positions.append(np.asarray(position))
    return np.concatenate(values), np.concatenate(positions)


def top_images(values: np.ndarray, channel: int, k: int) -> np.ndarray:
    """Indices of the `k` images whose strongest response in `channel` is largest, best first:
    one patch per image, as in Zeiler & Fergus' figure, rather than k overlapping ones."""
    return np.argsort(-values[:, channel], kind='stable')[:k]


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The (top, left, height, width) window of an HWC image; parts off the image are zero
    (mean-coloured once shown, since images are normalised)."""
    top, left, height, width = box
    out = np.zeros((height, width, image.shape[-1]), image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, image.shape[0]), min(left + width, image.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out
