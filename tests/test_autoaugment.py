"""AutoAugment: the v0 policy table against the TF reference, its sampling, and the pipeline."""

import functools

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_sample_images

from jaxconv.data import autoaugment as aa
from jaxconv.data import preprocess
from jaxconv.data import randaugment as ra

# tensorflow/tpu models/official/efficientnet/autoaugment.py `policy_v0`, transcribed from the
# reference file (the same at b3293eb, the July 2019 commit that added AutoAugment, and at HEAD).
# timm's `auto_augment_policy_v0` ("ImageNet v0 policy from TPU EfficientNet impl") holds the same
# table except that it swaps TranslateY for its relative TranslateYRel.
REFERENCE_V0 = [
    [('Equalize', 0.8, 1), ('ShearY', 0.8, 4)],
    [('Color', 0.4, 9), ('Equalize', 0.6, 3)],
    [('Color', 0.4, 1), ('Rotate', 0.6, 8)],
    [('Solarize', 0.8, 3), ('Equalize', 0.4, 7)],
    [('Solarize', 0.4, 2), ('Solarize', 0.6, 2)],
    [('Color', 0.2, 0), ('Equalize', 0.8, 8)],
    [('Equalize', 0.4, 8), ('SolarizeAdd', 0.8, 3)],
    [('ShearX', 0.2, 9), ('Rotate', 0.6, 8)],
    [('Color', 0.6, 1), ('Equalize', 1.0, 2)],
    [('Invert', 0.4, 9), ('Rotate', 0.6, 0)],
    [('Equalize', 1.0, 9), ('ShearY', 0.6, 3)],
    [('Color', 0.4, 7), ('Equalize', 0.6, 0)],
    [('Posterize', 0.4, 6), ('AutoContrast', 0.4, 7)],
    [('Solarize', 0.6, 8), ('Color', 0.6, 9)],
    [('Solarize', 0.2, 4), ('Rotate', 0.8, 9)],
    [('Rotate', 1.0, 7), ('TranslateY', 0.8, 9)],
    [('ShearX', 0.0, 0), ('Solarize', 0.8, 4)],
    [('ShearY', 0.8, 0), ('Color', 0.6, 4)],
    [('Color', 1.0, 0), ('Rotate', 0.6, 2)],
    [('Equalize', 0.8, 4), ('Equalize', 0.0, 8)],
    [('Equalize', 1.0, 4), ('AutoContrast', 0.6, 2)],
    [('ShearY', 0.4, 7), ('SolarizeAdd', 0.6, 7)],
    [('Posterize', 0.8, 2), ('Solarize', 0.6, 10)],
    [('Solarize', 0.6, 8), ('Equalize', 0.6, 1)],
    [('Color', 0.8, 6), ('Rotate', 0.4, 5)],
]


@functools.cache
def _image() -> np.ndarray:
    """A natural 64 x 80 RGB image (part of sklearn's china.jpg)."""
    return load_sample_images().images[0][100:292:3, 200:440:3]


def _seed(i: int) -> tf.Tensor:
    return tf.constant([i, 7], tf.int64)


def test_policy_v0_is_the_references_table():
    assert [list(sub_policy) for sub_policy in aa.POLICIES['v0']] == REFERENCE_V0
    # distort_image_with_autoaugment's hparams: cutout_const=100, translate_const=250.
    assert (aa.AUTOAUGMENT_CONSTANTS.translate, aa.AUTOAUGMENT_CONSTANTS.cutout) == (250, 100)


@pytest.mark.parametrize('name, level, expected', [
    # The reference's level_to_arg at AutoAugment's constants, evaluated by hand.
    ('TranslateY', 9, 250 * 9 / 10),  # 225 px.
    ('Rotate', 8, 30 * 8 / 10), ('ShearY', 4, 0.3 * 4 / 10), ('ShearX', 9, 0.3 * 9 / 10),
    ('Color', 9, 1.8 * 9 / 10 + 0.1), ('Color', 0, 0.1),
    ('Solarize', 3, int(256 * 3 / 10)), ('SolarizeAdd', 7, int(110 * 7 / 10)),
    ('Posterize', 6, int(4 * 6 / 10)),
    # Level 2 gives 0 bits: TF's right shift by 8 of a uint8 keeps the top bit (randaugment.py).
    ('Posterize', 2, 1),
    ('Solarize', 10, 0),  # Threshold 256 compared as uint8: 0, every pixel inverted.
])
def test_level_to_args_at_autoaugment_constants(name, level, expected):
    args = ra.level_to_args(name, level, 'tf', aa.AUTOAUGMENT_CONSTANTS)
    assert args == pytest.approx((expected,))


def _plans(n: int) -> dict[str, np.ndarray]:
    """sample_plan for seeds 0..n-1, computed inside tf.data."""
    dataset = tf.data.Dataset.range(n).map(
        lambda i: aa.sample_plan(tf.stack([i, tf.constant(7, tf.int64)]))._asdict())
    return {k: v.numpy() for k, v in dataset.batch(n).get_single_element().items()}


def test_sub_policies_are_uniform_and_ops_fire_with_their_probability():
    n = 6000
    plan = _plans(n)
    # Chi-square of the 25 sub-policy counts against its 1 - 1e-6 quantile (72.2 for 24 degrees of
    # freedom, scipy.stats.chi2.ppf).
    counts = np.bincount(plan['sub_policy'], minlength=25)
    expected = n / 25
    assert ((counts - expected) ** 2 / expected).sum() < 72.2
    # Each step fires with its table probability: exactly never at 0.0 and always at 1.0, and
    # within 5 standard deviations of p otherwise (seeds are fixed, so this is deterministic).
    probs = np.array([[p for _, p, _ in sub_policy] for sub_policy in REFERENCE_V0])
    chosen_p = probs[plan['sub_policy']]  # [n, 2]
    for p in np.unique(probs):
        fired = plan['apply'][chosen_p == p]
        if p in (0.0, 1.0):
            assert np.all(fired == bool(p)), p
        else:
            assert abs(fired.mean() - p) < 5 * np.sqrt(p * (1 - p) / fired.size), p


def _by_hand(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The plan's sub-policy applied step by step with RandAugment's tf-mode ops."""
    plan = aa.sample_plan(seed)
    for step, (name, _, level) in enumerate(REFERENCE_V0[int(plan.sub_policy)]):
        if plan.apply[step]:
            image = ra.apply_op(name, image, level, plan.op_seed[step], 'tf',
                                aa.AUTOAUGMENT_CONSTANTS)
    return image


def test_autoaugment_applies_its_plan_eagerly_and_in_tf_data():
    image = tf.constant(_image())
    seeds = [_seed(i) for i in range(8)]
    in_tf_data = list(tf.data.Dataset.from_tensor_slices(tf.stack(seeds)).map(
        lambda seed: aa.autoaugment(image, seed)).as_numpy_iterator())
    changed = 0
    for seed, graph in zip(seeds, in_tf_data, strict=True):
        eager = aa.autoaugment(image, seed).numpy()
        assert eager.dtype == np.uint8 and eager.shape == image.shape
        np.testing.assert_array_equal(eager, graph)
        np.testing.assert_array_equal(eager, _by_hand(image, seed).numpy())
        changed += not np.array_equal(eager, image.numpy())
    assert changed >= 4  # Most draws change the image (no op fires with probability ~0.2).


def test_unknown_policy_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown AutoAugment policy 'v1'; valid: v0"):
        aa.autoaugment(tf.constant(_image()), _seed(0), 'v1')


def test_crop_becomes_uint8_by_truncation_in_the_tf_modes(digits_config):
    """TF: `tf.cast(tf.clip_by_value(image, 0.0, 255.0), dtype=tf.uint8)` before augmenting."""
    image = tf.constant([[[100.7], [255.9], [-3.0], [100.2]]])
    np.testing.assert_array_equal(preprocess.to_uint8(image, truncate=True)[..., 0],
                                  [[100, 255, 0, 100]])
    np.testing.assert_array_equal(preprocess.to_uint8(image, truncate=False)[..., 0],
                                  [[101, 255, 0, 100]])
    # augment() hands the ops the truncated crop in tf modes and the rounded one in paper mode.
    cfg = digits_config.dataset
    crop = tf.constant(_image(), tf.float32) + 0.7
    cfg.randaugment_layers, cfg.randaugment_magnitude = 1, 9.0
    for mode, truncate in (('tf', True), ('paper', False)):
        cfg.randaugment_mode = mode
        expected = ra.randaugment(preprocess.to_uint8(crop, truncate=truncate), _seed(3),
                                  num_layers=1, magnitude=9.0, mode=mode)
        np.testing.assert_array_equal(preprocess.augment(crop, _seed(3), cfg), expected)
    cfg.randaugment_layers, cfg.autoaugment = 0, 'v0'
    np.testing.assert_array_equal(preprocess.augment(crop, _seed(3), cfg),
                                  aa.autoaugment(tf.constant(_image()), _seed(3)))


def test_training_crop_gets_autoaugment_after_crop_and_flip(digits_config):
    """train_image: crop and flip as without augmentation, then v0 on the truncated uint8 crop
    with the third of the example seed's three streams (crop, flip, augmentation)."""
    cfg = digits_config.dataset
    cfg.preprocess, cfg.image_size = 'imagenet', 48
    image_bytes = tf.io.encode_jpeg(tf.constant(_image()))
    changed = 0
    for i in range(4):
        seed = _seed(i)
        cfg.autoaugment = ''
        plain = preprocess.train_image(image_bytes, seed, cfg, channels=3)
        cfg.autoaugment = 'v0'
        augmented = preprocess.train_image(image_bytes, seed, cfg, channels=3)
        augment_seed = tf.random.experimental.stateless_split(seed, 3)[2]
        expected = aa.autoaugment(preprocess.to_uint8(plain, truncate=True), augment_seed)
        np.testing.assert_array_equal(augmented, tf.cast(expected, tf.float32))
        changed += not np.array_equal(augmented, plain)
    assert changed > 0
    cfg.randaugment_layers = 2
    with pytest.raises(ValueError, match="set dataset.autoaugment='' or dataset.randaugment_lay"):
        preprocess.train_image(image_bytes, _seed(0), cfg, channels=3)
