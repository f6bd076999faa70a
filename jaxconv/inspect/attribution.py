"""Where a network looks: occlusion sensitivity, saliency maps and Grad-CAM, each jit-compiled.

All three explain one class per image (the true label, or the prediction when there is none) and
return one map per image; `receptive_field.to_input_grid` places a coarse map over the image.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxconv.models.features import features_and_logits, list_layers


@functools.partial(jax.jit, static_argnames=('model', 'size', 'stride', 'batch_size'))
def occlusion(model: nn.Module, variables: Any, images: jax.Array, classes: jax.Array, *,
              size: int, stride: int, fill: float | jax.Array = 0.0,
              batch_size: int = 256) -> jax.Array:
    """Probability of `classes` with a `size` x `size` square of value `fill` slid over the image
    (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", Sec. 4.2 and
    Fig. 7: a grey square, the classifier's output mapped by its position).

    Returns (N, rows, cols): entry [n, i, j] is p(classes[n] | image n with the square's top-left
    corner at (i * stride, j * stride)). `fill` 0 is the dataset's mean colour in normalised
    units, the "grey" of the paper. Positions go through the model `batch_size` at a time.
    """
    height, width = images.shape[1:3]
    rows, cols = range(0, height - size + 1, stride), range(0, width - size + 1, stride)
    corners = jnp.array([(top, left) for top in rows for left in cols])
    ys, xs = jnp.arange(height)[:, None], jnp.arange(width)[None, :]

    def one_image(image: jax.Array, label: jax.Array) -> jax.Array:
        def occluded_probability(corner: jax.Array) -> jax.Array:
            top, left = corner[0], corner[1]
            inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
            occluded = jnp.where(inside[:, :, None], fill, image)
            return jax.nn.softmax(model.apply(variables, occluded[None], train=False)[0])[label]

        return jax.lax.map(occluded_probability, corners, batch_size=batch_size)

    probabilities = jax.lax.map(lambda pair: one_image(*pair), (images, classes))
    return probabilities.reshape(len(images), len(rows), len(cols))


@functools.partial(jax.jit, static_argnames=('model',))
def saliency(model: nn.Module, variables: Any, images: jax.Array, classes: jax.Array) -> jax.Array:
    """Image-specific class saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside
    Convolutional Networks", Sec. 3.1): w = dS_c/dI at the image (Eq. 3, S_c the unnormalised
    class score), M_ij = max over channels of |w_h(i,j,c)|. Returns (N, H, W)."""
    def class_score(image: jax.Array, label: jax.Array) -> jax.Array:
        return model.apply(variables, image[None], train=False)[0, label]

    gradients = jax.vmap(jax.grad(class_score))(images, classes)
    return jnp.abs(gradients).max(axis=-1)


@functools.partial(jax.jit, static_argnames=('model', 'layer'))
def gradcam(model: nn.Module, variables: Any, images: jax.Array, classes: jax.Array,
            layer: str) -> jax.Array:
    """Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", Sec. 3): neuron weights alpha_k = spatial mean of dy^c/dA^k
    (Eq. 1), map = ReLU(sum_k alpha_k A^k) (Eq. 2), with y^c the class score before the softmax
    and A the activation of `layer` (an NHWC module output). Returns (N, h, w) at the layer's
    resolution."""
    def class_scores(perturbation: jax.Array) -> tuple[jax.Array, jax.Array]:
        activation, logits = features_and_logits(model, variables, images, layer, perturbation)
        return jnp.take_along_axis(logits, classes[:, None], axis=1).sum(), activation

    shape = jax.eval_shape(lambda: features_and_logits(model, variables, images, layer)[0]).shape
    if len(shape) != 4:
        raise ValueError(f'Grad-CAM needs a layer with a spatial map; {layer!r} has shape {shape}')
    # Each image's score depends on its own activation only, so one gradient of the summed
    # scores gives every image's dy^c/dA at once.
    gradients, activation = jax.grad(class_scores, has_aux=True)(jnp.zeros(shape, jnp.float32))
    weights = gradients.mean(axis=(1, 2), keepdims=True)  # alpha_k, Eq. 1.
    return jax.nn.relu((weights * activation).sum(axis=-1))  # Eq. 2.


def last_spatial_layer(model: nn.Module, variables: Any, image_shape: tuple[int, int, int]) -> str:
    """The last module whose output is a map larger than 1x1: Grad-CAM's default layer (the
    paper uses the last convolutional layer)."""
    layers = list_layers(model, variables, image_shape)
    for name, shape in reversed(layers.items()):
        if len(shape) == 3 and shape[0] * shape[1] > 1:
            return name
    raise ValueError('the model has no layer with a spatial map for Grad-CAM')

