"""Where in the input a layer's units look: receptive-field size, stride and centres.

Measured, not derived from the architecture: a unit's receptive field is the set of input pixels
its activation has a nonzero gradient with respect to. One input can leave pixels out (a ReLU that
is off, a max pool that picked another pixel), so the union over several random inputs is taken.
A convolutional map is translation-equivariant, so the centre unit and its two neighbours give
the size and the stride of every unit; units near the border differ only in being cut by the
image edge, which `box` reproduces. When even the centre unit's field reaches past the image (deep
layers), the spacing cannot be measured and the map is taken to tile the image evenly, as 'SAME'
padding makes it.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxconv.models.features import features

_RANDOM_INPUTS = 16  # A 3x3 max pool misses a given pixel in all 16 with probability (8/9)^16.


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Receptive fields of the units of one NHWC layer, in input pixels."""

    size: tuple[int, int]  # (height, width) of one interior unit's field.
    stride: tuple[float, float]  # Input pixels between neighbouring units' fields.
    first_centre: tuple[float, float]  # Centre of unit (0, 0)'s field (may lie off the image).
    map_shape: tuple[int, int]  # (h, w) of the layer.

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Field centres of the unit rows and of the unit columns."""
        return tuple(self.first_centre[a] + self.stride[a] * np.arange(self.map_shape[a])
                     for a in (0, 1))

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of unit (row, col)'s field, before clipping to the image."""
        top = round(self.first_centre[0] + self.stride[0] * row - (self.size[0] - 1) / 2)
        left = round(self.first_centre[1] + self.stride[1] * col - (self.size[1] - 1) / 2)
        return top, left, self.size[0], self.size[1]


def _support_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def receptive_field(model: nn.Module, variables: Any, layer: str,
                    image_shape: tuple[int, int, int], seed: int = 0) -> ReceptiveField:
    """The receptive field of `layer`'s units (an NHWC module output) for `image_shape` inputs."""
    inputs = jax.random.normal(jax.random.key(seed), (_RANDOM_INPUTS, *image_shape))
    map_shape = jax.eval_shape(lambda v, x: features(model, v, x, layer), variables,
                               inputs[:1]).shape
    if len(map_shape) != 4:
        raise ValueError(f'layer {layer!r} has no spatial map (shape {map_shape})')
    height, width = map_shape[1:3]
    centre = (height // 2, width // 2)
    # The next unit down and right, or up and left where the map ends (a 2x2 map's centre).
    step = (1 if centre[0] + 1 < height else -1, 1 if centre[1] + 1 < width else -1)
    units = [centre, (centre[0] + step[0], centre[1]), (centre[0], centre[1] + step[1])]

    @jax.jit
    def support(variables: Any, inputs: jax.Array) -> jax.Array:
        def unit_sum(image: jax.Array, row: int, col: int) -> jax.Array:
            return features(model, variables, image[None], layer)[0, row, col].sum()

        masks = [jnp.abs(jax.vmap(jax.grad(unit_sum), in_axes=(0, None, None))(inputs, r, c))
                 .sum(axis=(0, 3)) > 0 for r, c in units]
        return jnp.stack(masks)

    boxes = [_support_box(mask) for mask in np.asarray(support(variables, inputs))]
    size = (int(boxes[0][2]), int(boxes[0][3]))
    inside = all(top > 0 and left > 0 and top + h < image_shape[0] and left + w < image_shape[1]
                 for top, left, h, w in boxes)
    if inside:  # The whole field was seen: take the centres' spacing as measured.
        centres = [(top + (h - 1) / 2, left + (w - 1) / 2) for top, left, h, w in boxes]
        stride = ((centres[1][0] - centres[0][0]) / step[0] if height > 1 else image_shape[0],
                  (centres[2][1] - centres[0][1]) / step[1] if width > 1 else image_shape[1])
        first = (centres[0][0] - stride[0] * centre[0], centres[0][1] - stride[1] * centre[1])
    else:  # Fields reach past the image (deep layers): assume 'SAME' padding, map tiles image.
        stride = (image_shape[0] / height, image_shape[1] / width)
        first = ((stride[0] - 1) / 2, (stride[1] - 1) / 2)
    return ReceptiveField(size=size, stride=tuple(map(float, stride)),
                          first_centre=tuple(map(float, first)), map_shape=(height, width))

def to_input_grid(maps: np.ndarray, field: ReceptiveField, height: int,
                  width: int) -> np.ndarray:
    """(N, h, w) unit maps as (N, height, width) pixel maps: each unit's value sits at its field's
    centre and pixels in between interpolate linearly (beyond the outermost centres the value is
    held). For 'SAME'-padded networks this is the usual bilinear upsampling; for 'VALID' ones
    (LeNet) it keeps the map over the image region the units actually see."""
    row_centres, col_centres = field.centres()

    def weights(pixels: int, centres: np.ndarray) -> np.ndarray:
        eye = np.eye(len(centres))
        return np.stack([np.interp(np.arange(pixels), centres, eye[i])
                         for i in range(len(centres))], axis=1)  # (pixels, units)

    rows, cols = weights(height, row_centres), weights(width, col_centres)
    return np.einsum('yi,nij,xj->nyx', rows, np.asarray(maps), cols)
