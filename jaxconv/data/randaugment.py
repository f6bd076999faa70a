"""RandAugment as TF ops for tf.data `map`: no Python per image, stateless randomness only.

Cubuk, Zoph, Shlens and Le 2020, "RandAugment: Practical automated data augmentation with a reduced
search space" (arXiv:1909.13719): apply N ops, each drawn uniformly with replacement from a fixed
list, all at one shared magnitude M. The ops and their level -> argument maps follow the TF
reference used by EfficientNet and ResNet-RS, tensorflow/tpu
`models/official/efficientnet/autoaugment.py` (`distort_image_with_randaugment`).

Modes (`randaugment(..., mode=...)`):

- `tf`: the reference as it runs. 16 ops (AutoContrast, Equalize, Invert, Rotate, Posterize,
  Solarize, Color, Contrast, Brightness, Sharpness, ShearX, ShearY, TranslateX, TranslateY, Cutout,
  SolarizeAdd; no Identity). The level is NOT clipped at `_MAX_LEVEL` = 10, so ResNet-RS's M=15
  extrapolates (rotate 45 deg, shear 0.45, translate 150 px, enhance factor 2.8). Translate 100 px
  and cutout 40 px at level 10, fill value 128, signed arguments negated with probability 1/2.
  The reference draws p ~ U(0.2, 0.8) for every op and then never uses it: the chosen op is always
  applied. We draw p too (`sample_layers` returns it) and ignore it the same way.
- `tf_prob`: `tf`, but the chosen op fires with that probability p ~ U(0.2, 0.8): the behaviour
  the draw suggests and some ports implement (e.g. FixMatch's RandAugmentPC). ResNet-RS and
  EfficientNet did not train with it.
- `paper`: the paper's 14 ops (Identity, AutoContrast, Equalize, Rotate, Solarize, Color,
  Posterize, Contrast, Brightness, Sharpness, ShearX, ShearY, TranslateX, TranslateY), always
  applied. The level maps to arguments with the same functions as `tf`, but the level is clipped
  to [0, 10]. Contrast blends towards the mean grey level as PIL does (see below).

Reference behaviours kept in `tf` mode, each documented where it is implemented:

- Contrast's grey target is the pixel count / 256 (for 224 x 224 always 196), not the mean grey
  level: tensorflow/tpu#825 and #1057; the old PIL 1.1.7 code it was ported from did the same.
- Solarize's threshold int(level / 10 * 256) is compared as uint8, i.e. modulo 256: level 10 inverts
  every pixel and level 15 thresholds at 128 (google-research/big_vision#110).
- Posterize shifts by 8 - bits with TF's shift clamped to 0..7, so 0 bits (level < 2.5) and more
  than 8 bits (level >= 22.5) both keep one bit.
- Shear and translate act on pixel indices about the top-left pixel; rotate turns about the centre
  ((w - 1) / 2, (h - 1) / 2). All use nearest-neighbour sampling.

Registry: `OPS[mode][name](image, *args)` is the op with explicit arguments (deterministic, no
seed; Cutout takes `(pad_size, center_y, center_x)`). `level_to_args(name, magnitude, mode)` gives
the positive arguments a magnitude maps to, `apply_op(name, image, magnitude, seed, mode)` applies
one op as RandAugment does (random sign, random cutout centre), `sample_layers` draws the per-layer
choices and `randaugment` composes N ops. Translation is in pixels (100 at level 10) whatever the
image size, as in the reference: on CIFAR-sized images it blanks the image from level ~3.
Images are uint8 H x W x C with a static C of 3 or 1 (grayscale: Color is the identity).
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

_MAX_LEVEL = 10.0  # The level at which each op reaches its "full" argument.
_FILL = 128  # Grey for pixels that geometric ops and cutout leave empty.
_PROB_RANGE = (0.2, 0.8)  # Per-op probability range drawn by the reference.
# Pillow's ImageFilter.SMOOTH, the blur that Sharpness extrapolates away from.
_SMOOTH_KERNEL = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))
_SMOOTH_SCALE = 13.0

Op = Callable[..., tf.Tensor]


class OpConstants(NamedTuple):
    """The sizes at level 10 that the reference sets per policy (its `augmentation_hparams`)."""

    translate: float  # Pixels of translation.
    cutout: int  # Half the cutout square's side, in pixels.


# distort_image_with_randaugment's hparams; AutoAugment's differ (autoaugment.py).
RANDAUGMENT_CONSTANTS = OpConstants(translate=100.0, cutout=40)


# ---------------------------------------------------------------------------------------------
# Helpers.

def _channels(image: tf.Tensor) -> int:
    """The static channel count (the ops build per-channel kernels and tables from it)."""
    return int(image.shape[-1])


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL's Image.blend: degenerate + factor * (image - degenerate), clipped and truncated."""
    low = tf.cast(degenerate, tf.float32)
    mixed = low + factor * (tf.cast(image, tf.float32) - low)
    return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)


def _gray(image: tf.Tensor) -> tf.Tensor:
    """Luma as uint8 H x W x 1, via TF's rgb_to_grayscale like the reference."""
    return image if _channels(image) == 1 else tf.image.rgb_to_grayscale(image)


def _transform(image: tf.Tensor, matrix: list) -> tf.Tensor:
    """Projective transform; `matrix` maps output pixel indices to input pixel indices."""
    transforms = tf.reshape(tf.cast(tf.stack(matrix), tf.float32), [1, 8])
    # Nearest sampling and a constant 128 fill give exactly what the reference gets by transforming
    # an extra all-ones channel and greying the pixels where it came back 0.
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis], transforms=transforms, output_shape=tf.shape(image)[:2],
        fill_value=tf.constant(_FILL, tf.float32), interpolation='NEAREST', fill_mode='CONSTANT')
    return tf.ensure_shape(out[0], image.shape)


# ---------------------------------------------------------------------------------------------
# Pixel ops.

def identity(image: tf.Tensor) -> tf.Tensor:
    """The image unchanged (the paper's Identity)."""
    return image


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """Per channel, stretch [min, max] to [0, 255] (PIL ImageOps.autocontrast, no cutoff)."""
    x = tf.cast(image, tf.float32)
    lo = tf.reduce_min(x, axis=[0, 1])
    hi = tf.reduce_max(x, axis=[0, 1])
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    # x * scale + offset and truncation, in float32, as the reference and PIL's lookup table do.
    stretched = tf.cast(tf.clip_by_value(x * scale - lo * scale, 0.0, 255.0), tf.uint8)
    return tf.where(hi > lo, stretched, image)  # A flat channel is left alone.


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Per-channel histogram equalisation with PIL ImageOps.equalize's lookup table."""
    channels = _channels(image)
    values = tf.reshape(tf.cast(image, tf.int32), [-1, channels])
    # One bincount for all channels: channel k's values are offset by 256 k.
    hist = tf.math.bincount(values + 256 * tf.range(channels), minlength=256 * channels,
                            maxlength=256 * channels)
    hist = tf.reshape(hist, [channels, 256])
    # PIL leaves the count of the brightest occurring value out of the step.
    brightest = 255 - tf.argmax(tf.cast(tf.reverse(hist > 0, [1]), tf.int32), axis=1,
                                output_type=tf.int32)
    step = (tf.reduce_sum(hist, 1) - tf.gather(hist, brightest, batch_dims=1)) // 255
    safe_step = tf.maximum(step, 1)[:, tf.newaxis]
    lut = (tf.cumsum(hist, axis=1, exclusive=True) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(lut, 0, 255)
    # A step of 0 (nearly constant channel) means PIL returns the channel unchanged.
    lut = tf.where(step[:, tf.newaxis] > 0, lut, tf.range(256)[tf.newaxis])
    out = tf.gather(lut, tf.transpose(values), batch_dims=1)
    return tf.reshape(tf.cast(tf.transpose(out), tf.uint8), tf.shape(image))


def invert(image: tf.Tensor) -> tf.Tensor:
    """255 - pixel (PIL ImageOps.invert)."""
    return 255 - image


def posterize(image: tf.Tensor, bits: int) -> tf.Tensor:
    """Keep the top `bits` (1..8) bits of each value (PIL ImageOps.posterize)."""
    mask = (0xFF << (8 - bits)) & 0xFF
    return tf.bitwise.bitwise_and(image, tf.constant(mask, tf.uint8))


def solarize(image: tf.Tensor, threshold: int) -> tf.Tensor:
    """Invert values >= threshold (PIL ImageOps.solarize; threshold 0 inverts all)."""
    return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def solarize_add(image: tf.Tensor, addition: int, threshold: int = 128) -> tf.Tensor:
    """Add `addition` (clipped to 255) to values below threshold."""
    pixels = tf.cast(image, tf.int32)
    added = tf.cast(tf.clip_by_value(pixels + addition, 0, 255), tf.uint8)
    return tf.where(pixels < threshold, added, image)


def color(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Saturation: blend from the grey image (PIL ImageEnhance.Color)."""
    if _channels(image) == 1:
        return image  # Grey has no saturation; PIL's Color is also the identity on mode L.
    return _blend(tf.image.grayscale_to_rgb(_gray(image)), image, factor)


def contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Blend from the mean grey level (PIL ImageEnhance.Contrast, Pillow >= 2)."""
    gray = tf.cast(_gray(image), tf.int64)
    count = tf.cast(tf.size(gray), tf.int64)
    # int(mean + 0.5) in exact integer arithmetic.
    mean = (2 * tf.reduce_sum(gray) + count) // (2 * count)
    return _blend(tf.fill(tf.shape(image), tf.cast(mean, tf.uint8)), image, factor)


def contrast_tf_reference(image: tf.Tensor, factor: float) -> tf.Tensor:
    """The reference's Contrast: blend from grey level min(pixel count / 256, 255), truncated."""
    # The reference sums the histogram's counts instead of weighting them by value, so its "mean"
    # depends only on the image size (tensorflow/tpu#825); kept because ResNet-RS trained with it.
    size = tf.cast(tf.shape(image)[0] * tf.shape(image)[1], tf.float32)
    level = tf.cast(tf.clip_by_value(size / 256.0, 0.0, 255.0), tf.uint8)
    return _blend(tf.fill(tf.shape(image), level), image, factor)


def brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Blend from black (PIL ImageEnhance.Brightness)."""
    return _blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Blend from the SMOOTH-filtered image, border pixels kept (PIL ImageEnhance.Sharpness)."""
    channels = _channels(image)
    kernel = tf.constant(_SMOOTH_KERNEL, tf.float32) / _SMOOTH_SCALE
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[tf.newaxis], kernel, [1, 1, 1, 1],
                                    'VALID')[0]
    # Truncation to uint8 as in the reference (PIL rounds; at most 1 grey level apart).
    smooth = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8)
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    # PIL's 3x3 filter copies the one-pixel border unfiltered, so the border is never sharpened.
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows = tf.range(height)[:, tf.newaxis, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, :, tf.newaxis]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return _blend(tf.where(interior, smooth, image), image, factor)


# ---------------------------------------------------------------------------------------------
# Geometric ops and cutout.

def rotate(image: tf.Tensor, degrees: float | tf.Tensor) -> tf.Tensor:
    """Rotate counter-clockwise by `degrees` about the image centre (PIL Image.rotate)."""
    radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(radians), tf.sin(radians)
    cx = (tf.cast(tf.shape(image)[1], tf.float32) - 1.0) / 2.0
    cy = (tf.cast(tf.shape(image)[0], tf.float32) - 1.0) / 2.0
    # Output pixel p reads input pixel centre + R(angle) (p - centre).
    return _transform(image, [cos, -sin, cx - cos * cx + sin * cy,
                              sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])


def shear_x(image: tf.Tensor, level: float | tf.Tensor) -> tf.Tensor:
    """Output (x, y) reads input (x + level * y, y)."""
    return _transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image: tf.Tensor, level: float | tf.Tensor) -> tf.Tensor:
    """Output (x, y) reads input (x, y + level * x)."""
    return _transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def translate_x(image: tf.Tensor, pixels: float | tf.Tensor) -> tf.Tensor:
    """Output (x, y) reads input (x + pixels, y): content moves left for positive pixels."""
    return _transform(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0, 0.0, 0.0])


def translate_y(image: tf.Tensor, pixels: float | tf.Tensor) -> tf.Tensor:
    """Output (x, y) reads input (x, y + pixels): content moves up for positive pixels."""
    return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels, 0.0, 0.0])


def cutout(image: tf.Tensor, pad_size: int, center_y: tf.Tensor, center_x: tf.Tensor) -> tf.Tensor:
    """Grey out rows [cy - pad, cy + pad) x cols [cx - pad, cx + pad), clipped to the image."""
    rows = tf.range(tf.shape(image)[0])[:, tf.newaxis, tf.newaxis]
    cols = tf.range(tf.shape(image)[1])[tf.newaxis, :, tf.newaxis]
    inside = ((rows >= center_y - pad_size) & (rows < center_y + pad_size)
              & (cols >= center_x - pad_size) & (cols < center_x + pad_size))
    return tf.where(inside, tf.constant(_FILL, tf.uint8), image)


# ---------------------------------------------------------------------------------------------
# Registry: each mode's op list, in the order whose index RandAugment draws.

_TF_OPS: dict[str, Op] = {  # The reference's `available_ops` order.
    'AutoContrast': autocontrast, 'Equalize': equalize, 'Invert': invert, 'Rotate': rotate,
    'Posterize': posterize, 'Solarize': solarize, 'Color': color,
    'Contrast': contrast_tf_reference, 'Brightness': brightness, 'Sharpness': sharpness,
    'ShearX': shear_x, 'ShearY': shear_y, 'TranslateX': translate_x, 'TranslateY': translate_y,
    'Cutout': cutout, 'SolarizeAdd': solarize_add,
}
_PAPER_OPS: dict[str, Op] = {  # The paper's Sec. 3 list.
    'Identity': identity, 'AutoContrast': autocontrast, 'Equalize': equalize, 'Rotate': rotate,
    'Solarize': solarize, 'Color': color, 'Posterize': posterize, 'Contrast': contrast,
    'Brightness': brightness, 'Sharpness': sharpness, 'ShearX': shear_x, 'ShearY': shear_y,
    'TranslateX': translate_x, 'TranslateY': translate_y,
}
OPS: dict[str, dict[str, Op]] = {'tf': _TF_OPS, 'tf_prob': _TF_OPS, 'paper': _PAPER_OPS}
MODES = tuple(OPS)

# Ops whose argument the reference negates with probability 1/2.
SIGNED_OPS = frozenset({'Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY'})


def _posterize_bits(level: float) -> tuple[int]:
    """int(level / 10 * 4) bits, with the reference's out-of-range shift behaviour."""
    bits = int((level / _MAX_LEVEL) * 4)
    # The reference shifts uint8 values by 8 - bits; TF clamps shift counts to 0..7 and a negative
    # count wraps round as uint8 first, so 0 bits and more than 8 bits both keep one bit.
    return (bits if 1 <= bits <= 8 else 1,)


def _solarize_threshold(level: float) -> tuple[int]:
    """int(level / 10 * 256), taken modulo 256 as the reference's uint8 comparison does."""
    return (int((level / _MAX_LEVEL) * 256) % 256,)


# level -> positive op arguments; written (level / 10) * const as the reference does, so the float
# rounding before int() is the same.
_LEVEL_TO_ARGS: dict[str, Callable[[float], tuple]] = {
    'Rotate': lambda level: ((level / _MAX_LEVEL) * 30.0,),
    'ShearX': lambda level: ((level / _MAX_LEVEL) * 0.3,),
    'ShearY': lambda level: ((level / _MAX_LEVEL) * 0.3,),
    'Color': lambda level: ((level / _MAX_LEVEL) * 1.8 + 0.1,),
    'Contrast': lambda level: ((level / _MAX_LEVEL) * 1.8 + 0.1,),
    'Brightness': lambda level: ((level / _MAX_LEVEL) * 1.8 + 0.1,),
    'Sharpness': lambda level: ((level / _MAX_LEVEL) * 1.8 + 0.1,),
    'Posterize': _posterize_bits,
    'Solarize': _solarize_threshold,
    'SolarizeAdd': lambda level: (int((level / _MAX_LEVEL) * 110),),
}


def _check_mode(mode: str) -> None:
    if mode not in OPS:
        raise ValueError(f'unknown RandAugment mode {mode!r}; valid modes: {", ".join(MODES)}')


def check_image(image: tf.Tensor) -> tf.Tensor:
    """`image` as a tensor, checked to be what the ops take; the error names the fix."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8 or image.shape.rank != 3 or image.shape[-1] not in (1, 3):
        raise ValueError('RandAugment and AutoAugment take a uint8 H x W x C image with a static C '
                         f'of 1 or 3; got {image.dtype.name} {image.shape} (cast to uint8 before '
                         'augmenting)')
    return image


def level_to_args(name: str, magnitude: float, mode: str = 'tf',
                  constants: OpConstants = RANDAUGMENT_CONSTANTS) -> tuple:
    """The op's positive arguments at `magnitude` (paper mode clips the level to [0, 10])."""
    _check_mode(mode)
    if name not in OPS[mode]:
        raise ValueError(f'unknown op {name!r} for mode {mode!r}; valid: {", ".join(OPS[mode])}')
    if magnitude < 0:
        raise ValueError(f'RandAugment magnitude must be >= 0, got {magnitude}')
    level = min(float(magnitude), _MAX_LEVEL) if mode == 'paper' else float(magnitude)
    if name in ('TranslateX', 'TranslateY'):
        return ((level / _MAX_LEVEL) * float(constants.translate),)
    if name == 'Cutout':
        return (int((level / _MAX_LEVEL) * constants.cutout),)
    return _LEVEL_TO_ARGS[name](level) if name in _LEVEL_TO_ARGS else ()


def apply_op(name: str, image: tf.Tensor, magnitude: float, seed: tf.Tensor, mode: str = 'tf',
             constants: OpConstants = RANDAUGMENT_CONSTANTS) -> tf.Tensor:
    """One op at `magnitude` as RandAugment applies it: random sign, random cutout centre.

    AutoAugment applies its ops the same way, at its own `constants`.
    """
    image = check_image(image)
    args = level_to_args(name, magnitude, mode, constants)
    sign_seed, row_seed, col_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if name in SIGNED_OPS:
        negate = tf.random.stateless_uniform([], sign_seed) < 0.5
        args = tuple(tf.where(negate, -arg, arg) for arg in args)
    if name == 'Cutout':
        shape = tf.shape(image)
        args += (tf.random.stateless_uniform([], row_seed, 0, shape[0], tf.int32),
                 tf.random.stateless_uniform([], col_seed, 0, shape[1], tf.int32))
    return tf.ensure_shape(OPS[mode][name](image, *args), image.shape)


class LayerPlan(NamedTuple):
    """RandAugment's random choices for one image, one row per layer."""

    op_index: tf.Tensor  # int32 [N], index into the mode's op list.
    prob: tf.Tensor  # float32 [N], the per-op probability (1 in paper mode; unused in tf mode).
    apply: tf.Tensor  # bool [N], whether the chosen op is applied.
    op_seed: tf.Tensor  # [N, 2], the seed `apply_op` gets.


def sample_layers(seed: tf.Tensor, num_layers: int, mode: str = 'tf') -> LayerPlan:
    """Draws each layer's op, probability and apply flag from `seed` (stateless)."""
    _check_mode(mode)
    if num_layers < 1:
        raise ValueError(f'sample_layers needs num_layers >= 1, got {num_layers}')
    num_ops = len(OPS[mode])
    rows = []
    for layer_seed in tf.unstack(tf.random.experimental.stateless_split(seed, num_layers)):
        select, prob_seed, coin, op_seed = tf.unstack(
            tf.random.experimental.stateless_split(layer_seed, 4))
        op_index = tf.random.stateless_uniform([], select, 0, num_ops, tf.int32)
        if mode == 'paper':
            prob, apply = tf.constant(1.0), tf.constant(True)
        else:
            prob = tf.random.stateless_uniform([], prob_seed, *_PROB_RANGE)
            # tf: the reference draws prob and applies the op regardless.
            apply = (tf.random.stateless_uniform([], coin) < prob if mode == 'tf_prob'
                     else tf.constant(True))
        rows.append((op_index, prob, apply, op_seed))
    return LayerPlan(*(tf.stack(column) for column in zip(*rows, strict=True)))


def randaugment(image: tf.Tensor, seed: tf.Tensor, *, num_layers: int, magnitude: float,
                mode: str = 'tf') -> tf.Tensor:
    """RandAugment(N=num_layers, M=magnitude) of a uint8 H x W x C image; same seed, same output.

    Args:
      image: uint8 H x W x C, C = 3 or 1 (static).
      seed: shape-[2] integer tensor for the stateless random ops.
      num_layers: N, ops applied in sequence.
      magnitude: M on the 0-10 scale; `tf` modes extrapolate above 10, `paper` clips to 10.
      mode: `tf`, `tf_prob` or `paper` (see the module docstring).

    Returns:
      The augmented uint8 image, same shape.
    """
    _check_mode(mode)
    image = check_image(image)
    if num_layers <= 0:
        return image
    level_to_args(next(iter(OPS[mode])), magnitude, mode)  # Validates magnitude once, eagerly.
    plan = sample_layers(seed, num_layers, mode)
    for layer in range(num_layers):
        branches = [functools.partial(apply_op, name, image, magnitude, plan.op_seed[layer], mode)
                    for name in OPS[mode]]
        chosen = functools.partial(tf.switch_case, plan.op_index[layer], branches)
        if mode == 'tf_prob':
            image = tf.cond(plan.apply[layer], chosen, functools.partial(tf.identity, image))
        else:
            image = chosen()
    return image
