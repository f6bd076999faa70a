"""Image preprocessing in TF ops, for use inside tf.data `map` (no Python per image).

Two styles, picked by `dataset.preprocess`:

- `small` (CIFAR-style; He et al. 2015, Sec. 4.2): resize to `image_size` if the stored images
  differ (digits are 8x8 and go to 32x32), then in training zero-pad `crop_padding` pixels per side,
  take a random `image_size` crop and flip left-right with probability 1/2. With `margin` > 0 the
  image is resized to `image_size - 2 * margin` and framed by `margin` zero pixels, in training and
  eval: LeNet-5's input, where the digit sits in the middle of a larger empty field so that every
  stroke can fall near the centre of a top-level unit's receptive field (LeCun et al. 1998,
  Sec. II.A: 20x20 digits centred in 28x28, padded to the 32x32 input).
- `imagenet` (Szegedy et al. 2015, "Going deeper", Sec. 6; the TF TPU reference
  `resnet_preprocessing.py`): training takes a random crop covering `area_range` of the image with
  aspect ratio in `aspect_ratio_range`, decoding only that window of the JPEG, resizes it to
  `image_size` and flips; eval center-crops `eval_crop_fraction` of the shorter side and resizes it.

Either style can add RandAugment (`randaugment.py`, `randaugment_layers`) or AutoAugment
(`autoaugment.py`, `autoaugment`) to the training crop.

Every random op is stateless and takes an explicit seed, so an example's augmentation is a function
of (config seed, its position in the stream) and a resumed run sees the same pixels.
"""

import ml_collections
import tensorflow as tf

from jaxconv.data import autoaugment, randaugment

# Inception crop: a sampled box must cover at least this fraction of the (absent) object box, which
# is the whole image. 0.1 and 10 attempts are the TF reference's values.
_MIN_OBJECT_COVERED = 0.1
_MAX_ATTEMPTS = 10


def _resize(image: tf.Tensor, size: int, method: str) -> tf.Tensor:
    """Resizes to size x size; returns float32 in 0..255 (bicubic may overshoot, so clip)."""
    image = tf.image.resize(image, [size, size], method=method)
    return tf.clip_by_value(image, 0.0, 255.0)


def _resize_small(image_bytes: tf.Tensor, cfg: ml_collections.ConfigDict, size: int,
                  channels: int) -> tf.Tensor:
    """The `small` style's resize to size x size, framed by `cfg.margin` zero pixels."""
    if not 0 <= 2 * cfg.margin < size:
        raise ValueError(f'dataset.margin={cfg.margin} must be >= 0 and leave room for the image '
                         f'in {size}x{size} pixels')
    inner = size - 2 * cfg.margin
    image = _resize(_decode(image_bytes, channels), inner, cfg.interpolation)
    return tf.pad(image, [[cfg.margin] * 2, [cfg.margin] * 2, [0, 0]]) if cfg.margin else image


def _decode(image_bytes: tf.Tensor, channels: int) -> tf.Tensor:
    return tf.io.decode_image(image_bytes, channels=channels, expand_animations=False)


def _image_shape(image_bytes: tf.Tensor, channels: int) -> tf.Tensor:
    """[height, width, channels] of an encoded image, reading only the header for JPEG."""
    return tf.cond(tf.io.is_jpeg(image_bytes),
                   lambda: tf.image.extract_jpeg_shape(image_bytes),
                   lambda: tf.shape(_decode(image_bytes, channels)))


def _decode_window(image_bytes: tf.Tensor, window: tf.Tensor, channels: int) -> tf.Tensor:
    """Decodes the [y, x, height, width] window; JPEG decodes only that window."""
    def crop_after_decode():
        image = _decode(image_bytes, channels)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

    return tf.cond(tf.io.is_jpeg(image_bytes),
                   lambda: tf.image.decode_and_crop_jpeg(image_bytes, window, channels=channels),
                   crop_after_decode)


def _center_window(shape: tf.Tensor, crop_fraction: float) -> tf.Tensor:
    """The centered square window whose side is `crop_fraction` of the shorter side."""
    height, width = shape[0], shape[1]
    side = tf.cast(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])


def inception_crop(image_bytes: tf.Tensor, seed: tf.Tensor, cfg: ml_collections.ConfigDict,
                   channels: int) -> tf.Tensor:
    """Random-area, random-aspect crop; falls back to a center crop when sampling fails."""
    shape = _image_shape(image_bytes, channels)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=_MIN_OBJECT_COVERED,
        aspect_ratio_range=tuple(cfg.aspect_ratio_range),
        area_range=tuple(cfg.area_range),
        max_attempts=_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    # Sampling returns the whole image when all attempts fail; the reference then center-crops.
    sampling_failed = tf.reduce_all(tf.equal(size[:2], shape[:2]))
    window = tf.where(sampling_failed, _center_window(shape, cfg.eval_crop_fraction), window)
    return _decode_window(image_bytes, window, channels)


def train_image(image_bytes: tf.Tensor, seed: tf.Tensor, cfg: ml_collections.ConfigDict,
                channels: int) -> tf.Tensor:
    """One augmented training image, float32 0..255, image_size x image_size x channels.

    Crop (and resize), flip, then RandAugment or AutoAugment of the crop when configured.
    """
    crop_seed, flip_seed, augment_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3))
    size = cfg.image_size
    if cfg.preprocess == 'small':
        image = _resize_small(image_bytes, cfg, size, channels)
        if cfg.crop_padding > 0:
            image = tf.pad(image, [[cfg.crop_padding] * 2, [cfg.crop_padding] * 2, [0, 0]])
            image = tf.image.stateless_random_crop(image, [size, size, channels], seed=crop_seed)
    elif cfg.preprocess == 'imagenet':
        image = _resize(inception_crop(image_bytes, crop_seed, cfg, channels), size,
                        cfg.interpolation)
    else:
        raise ValueError(f'unknown dataset.preprocess {cfg.preprocess!r}; valid: small, imagenet')
    if cfg.flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return augment(image, augment_seed, cfg)


def to_uint8(image: tf.Tensor, *, truncate: bool) -> tf.Tensor:
    """A float 0..255 image as uint8, truncated (TF's cast) or rounded to the nearest level.

    Also the form in which every batch crosses to the device (a quarter of float32's bytes),
    rounded; the train and eval steps normalise it there (`steps.normalize_images`).
    """
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.cast(image if truncate else tf.round(image), tf.uint8)


def augment(image: tf.Tensor, seed: tf.Tensor, cfg: ml_collections.ConfigDict) -> tf.Tensor:
    """RandAugment or AutoAugment of the float crop, as configured; the crop itself with neither.

    The ops take uint8. The TF reference gets it by clipping and casting, which truncates
    (resnet_preprocessing.py and efficientnet/preprocessing.py `preprocess_for_train`), and so do
    AutoAugment and RandAugment's tf modes here; RandAugment's paper mode rounds to the nearest
    level, as a PIL pipeline does when it resizes in uint8.
    """
    if cfg.autoaugment and cfg.randaugment_layers > 0:
        raise ValueError(f'dataset.autoaugment={cfg.autoaugment!r} and dataset.randaugment_layers='
                         f'{cfg.randaugment_layers} are alternatives (TF picks one augment_name): '
                         "set dataset.autoaugment='' or dataset.randaugment_layers=0")
    if cfg.autoaugment:
        image = autoaugment.autoaugment(to_uint8(image, truncate=True), seed, cfg.autoaugment)
    elif cfg.randaugment_layers > 0:
        image = randaugment.randaugment(
            to_uint8(image, truncate=cfg.randaugment_mode != 'paper'), seed,
            num_layers=cfg.randaugment_layers, magnitude=cfg.randaugment_magnitude,
            mode=cfg.randaugment_mode)
    else:
        return image
    return tf.cast(image, tf.float32)


def eval_resolution(cfg: ml_collections.ConfigDict) -> int:
    """The test resolution: `eval_image_size`, or the training `image_size` when it is unset."""
    return cfg.eval_image_size or cfg.image_size


def eval_image(image_bytes: tf.Tensor, cfg: ml_collections.ConfigDict, channels: int) -> tf.Tensor:
    """The deterministic eval view, float32 0..255, at the eval resolution."""
    size = eval_resolution(cfg)
    if cfg.preprocess == 'small':
        return _resize_small(image_bytes, cfg, size, channels)
    if cfg.preprocess == 'imagenet':
        window = _center_window(_image_shape(image_bytes, channels), cfg.eval_crop_fraction)
        return _resize(_decode_window(image_bytes, window, channels), size, cfg.interpolation)
    raise ValueError(f'unknown dataset.preprocess {cfg.preprocess!r}; valid: small, imagenet')


def describe_eval(cfg: ml_collections.ConfigDict) -> dict:
    """The eval preprocessing as plain data, recorded in summary.json next to the accuracy."""
    size = eval_resolution(cfg)
    description = {'style': cfg.preprocess, 'resolution': size, 'interpolation': cfg.interpolation,
                   'mean': list(cfg.mean), 'std': list(cfg.std)}
    if cfg.preprocess == 'imagenet':
        description['crop_fraction'] = cfg.eval_crop_fraction
    if cfg.preprocess == 'small' and cfg.margin:
        description['margin'] = cfg.margin
    return description
