"""RandAugment: each op against PIL, eagerly and inside tf.data, and the sampling statistics.

PIL appears only here, as the reference implementation of each op.
"""

import functools

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from sklearn.datasets import load_sample_images

from jaxconv.data import randaugment as ra

_GREY = (128, 128, 128)
_HEIGHT, _WIDTH = 80, 96  # Not square, so a swapped height and width shows.
_CUTOUT_CENTER = (30, 70)  # (row, col); the square pokes out of the right edge at level >= 7.
# tf mode up to ResNet-RS's M=15 (extrapolated); paper mode up to its clip at 10.
_MAGNITUDES = {'tf': (3, 7, 15), 'paper': (3, 7, 10)}
_MAX_MEAN_ABS_DIFF = 2.0  # Grey levels.


@functools.cache
def _china() -> np.ndarray:
    """A natural 80 x 96 RGB image: part of sklearn's china.jpg, downsampled."""
    image = Image.fromarray(load_sample_images().images[0])
    return np.asarray(image.crop((120, 40, 520, 373)).resize((_WIDTH, _HEIGHT), Image.BICUBIC))


def _low_contrast() -> np.ndarray:
    """The image squeezed into 20..224, so AutoContrast (and every other op) changes it."""
    return (20 + _china().astype(np.float32) * 0.8).astype(np.uint8)


def _pil_affine(image: Image.Image, a: float, b: float, c: float, d: float, e: float,
                f: float) -> Image.Image:
    """The index-space map (x, y) -> (a x + b y + c, d x + e y + f), done by PIL."""
    # Our ops map output pixel indices to input indices and round. PIL maps pixel-corner
    # coordinates (a pixel's centre is its index + 0.5) and floors, which is the same rounding.
    # Moving the index-space map into PIL's coordinates adds 0.5 - (a + b) / 2 to the x offset and
    # 0.5 - (d + e) / 2 to the y offset: 0 for a translation, -level / 2 for a shear.
    coefficients = (a, b, c + 0.5 - (a + b) / 2, d, e, f + 0.5 - (d + e) / 2)
    return image.transform(image.size, Image.AFFINE, coefficients, Image.NEAREST, fillcolor=_GREY)


def _pil_contrast_tf_reference(image: Image.Image, factor: float) -> Image.Image:
    """PIL's Contrast enhancer with the TF reference's grey target, min(pixel count / 256, 255)."""
    # PIL 1.1.7, which the reference was ported from, computed exactly this "mean" (the histogram's
    # counts summed, not weighted by value; tensorflow/models#8328), so the blend is still PIL's.
    enhancer = ImageEnhance.Contrast(image)
    level = min(image.width * image.height // 256, 255)
    enhancer.degenerate = Image.new(image.mode, image.size, (level,) * len(image.getbands()))
    return enhancer.enhance(factor)


def _pil_cutout(image: Image.Image, pad: int, row: int, col: int) -> Image.Image:
    """A grey 2 pad x 2 pad square centred at (row, col), clipped by the image."""
    image = image.copy()
    # ImageDraw's rectangle includes both corners.
    ImageDraw.Draw(image).rectangle([col - pad, row - pad, col + pad - 1, row + pad - 1],
                                    fill=_GREY)
    return image


_PIL_OPS = {
    'Identity': lambda image: image,
    'AutoContrast': ImageOps.autocontrast,
    'Equalize': ImageOps.equalize,
    'Invert': ImageOps.invert,
    # PIL turns counter-clockwise about (w / 2, h / 2) in corner coordinates: ((w - 1) / 2,
    # (h - 1) / 2) in indices, our op's centre.
    'Rotate': lambda image, deg: image.rotate(deg, resample=Image.NEAREST, fillcolor=_GREY),
    'Posterize': ImageOps.posterize,
    'Solarize': ImageOps.solarize,
    'SolarizeAdd': lambda image, add: image.point(
        [min(255, i + add) if i < 128 else i for i in range(256)] * 3),
    'Color': lambda image, factor: ImageEnhance.Color(image).enhance(factor),
    'Contrast': lambda image, factor: ImageEnhance.Contrast(image).enhance(factor),
    'Brightness': lambda image, factor: ImageEnhance.Brightness(image).enhance(factor),
    'Sharpness': lambda image, factor: ImageEnhance.Sharpness(image).enhance(factor),
    'ShearX': lambda image, level: _pil_affine(image, 1, level, 0, 0, 1, 0),
    'ShearY': lambda image, level: _pil_affine(image, 1, 0, 0, level, 1, 0),
    'TranslateX': lambda image, pixels: _pil_affine(image, 1, 0, pixels, 0, 1, 0),
    'TranslateY': lambda image, pixels: _pil_affine(image, 1, 0, 0, 0, 1, pixels),
    'Cutout': _pil_cutout,
}


def _op_cases(modes=('tf', 'paper')):
    return [(mode, name) for mode in modes for name in ra.OPS[mode]]


def _seed(i: int, j: int = 0) -> tf.Tensor:
    return tf.constant([i, j], tf.int64)


def _mean_abs_diff(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def mean_abs_diffs_vs_pil(mode: str, name: str, magnitude: float) -> list[float]:
    """Our op vs PIL's at `magnitude`, once per sign of a signed argument."""
    image = _china()
    args = ra.level_to_args(name, magnitude, mode)
    variants = [args, tuple(-a for a in args)] if name in ra.SIGNED_OPS else [args]
    if name == 'Cutout':
        variants = [args + _CUTOUT_CENTER]
    pil_op = _PIL_OPS[name]
    if name == 'Contrast' and mode != 'paper':
        pil_op = _pil_contrast_tf_reference
    diffs = []
    for variant in variants:
        ours = ra.OPS[mode][name](tf.constant(image), *variant).numpy()
        reference = np.asarray(pil_op(Image.fromarray(image), *variant))
        assert ours.shape == reference.shape and ours.dtype == np.uint8
        diffs.append(_mean_abs_diff(ours, reference))
    return diffs


@pytest.mark.parametrize('mode, name', _op_cases())
def test_op_agrees_with_pil(mode, name):
    """Mean |ours - PIL| <= 2 grey levels at each magnitude (and both signs where signed).

    Pixel ops agree exactly except Color, Sharpness and paper-mode Contrast: their grey or blurred
    image can be one level apart (TF's luma weights 0.2989/0.587/0.114 and truncation, PIL's
    0.299/0.587/0.114 with rounding), < 1 level on average after blending. Shears disagree on
    rows where level * y lands exactly on a half pixel: PIL steps in float64, TF computes in
    float32, so those ties break differently (about 1 row in 10 at level 0.3).
    """
    for magnitude in _MAGNITUDES[mode]:
        diffs = mean_abs_diffs_vs_pil(mode, name, magnitude)
        assert max(diffs) <= _MAX_MEAN_ABS_DIFF, (mode, name, magnitude, diffs)


@pytest.mark.parametrize('channels', [3, 1])
@pytest.mark.parametrize('mode, name', _op_cases())
def test_op_keeps_uint8_and_shape_eagerly_and_in_tf_data(mode, name, channels):
    image = _china() if channels == 3 else np.asarray(Image.fromarray(_china()).convert('L'))
    image = tf.constant(image.reshape(_HEIGHT, _WIDTH, channels))
    magnitude, seed = max(_MAGNITUDES[mode]), _seed(5)
    eager = ra.apply_op(name, image, magnitude, seed, mode)
    dataset = tf.data.Dataset.from_tensors(image).map(
        lambda x: ra.apply_op(name, x, magnitude, seed, mode))
    assert dataset.element_spec.shape == image.shape  # Static shape survives tracing.
    graph = dataset.get_single_element()
    for out in (eager, graph):
        assert out.dtype == tf.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(eager.numpy(), graph.numpy())


@pytest.mark.parametrize('mode', ra.MODES)
def test_randaugment_in_tf_data_is_deterministic_per_seed(mode):
    image = tf.constant(_china())

    def augment(seed):
        # M=3: translation (100 px at level 10) would otherwise leave this 80 x 96 image all grey,
        # and at M=5 the enhance ops are the identity (factor 1), both making outputs collide.
        return ra.randaugment(image, seed, num_layers=2, magnitude=3, mode=mode)

    seeds = tf.stack([tf.range(32, dtype=tf.int64), tf.fill([32], tf.constant(3, tf.int64))], 1)
    first = np.stack(list(tf.data.Dataset.from_tensor_slices(seeds).map(augment)
                          .as_numpy_iterator()))
    again = np.stack(list(tf.data.Dataset.from_tensor_slices(seeds).map(augment)
                          .as_numpy_iterator()))
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.uint8 and first.shape == (32, _HEIGHT, _WIDTH, 3)
    for i in (0, 7):  # Eager and tf.data give the same pixels for a seed.
        np.testing.assert_array_equal(augment(seeds[i]).numpy(), first[i])
    # Different seeds, different images. Two seeds collide only if they draw the same two ops
    # with the same signs (and cutout centres): about 1 pair in 400, so among 32 seeds (496 pairs)
    # a few duplicates at most. In tf_prob mode a quarter of the seeds fire no op and return the
    # input unchanged (expected 8 of 32, sd 2.4), so count distinct outputs among changed ones.
    changed = [out.tobytes() for out in first if not np.array_equal(out, image.numpy())]
    assert len(changed) >= (16 if mode == 'tf_prob' else 30)
    assert len(set(changed)) >= len(changed) - 4


@pytest.mark.parametrize('mode', ra.MODES)
def test_randaugment_composes_apply_op_as_the_plan_says(mode):
    image = tf.constant(_china())
    for i in range(4):
        seed = _seed(i, 11)
        plan = ra.sample_layers(seed, 3, mode)
        expected = image
        for layer in range(3):
            if plan.apply[layer]:
                name = list(ra.OPS[mode])[int(plan.op_index[layer])]
                expected = ra.apply_op(name, expected, 15, plan.op_seed[layer], mode)
        out = ra.randaugment(image, seed, num_layers=3, magnitude=15, mode=mode)
        np.testing.assert_array_equal(out.numpy(), expected.numpy())


def _plans(mode: str, n: int, num_layers: int = 1) -> dict[str, np.ndarray]:
    """sample_layers for seeds (i, 1), i < n, computed in tf.data."""
    dataset = tf.data.Dataset.range(n).map(
        lambda i: ra.sample_layers(tf.stack([i, tf.constant(1, tf.int64)]), num_layers,
                                   mode)._asdict())
    return dataset.batch(n).get_single_element()


def test_tf_mode_draws_p_but_always_applies_and_tf_prob_applies_with_p():
    n = 4000
    for mode in ('tf', 'tf_prob'):
        plan = _plans(mode, n)
        prob, apply = plan['prob'].numpy()[:, 0], plan['apply'].numpy()[:, 0]
        assert 0.2 <= prob.min() and prob.max() < 0.8
        # U(0.2, 0.8): mean 0.5, sd 0.6 / sqrt(12) = 0.173; 5 sd of the mean of n is 0.014.
        assert abs(prob.mean() - 0.5) < 5 * 0.173 / np.sqrt(n)
        if mode == 'tf':
            assert apply.all()  # The reference never uses the p it draws.
            continue
        # Marginally Bernoulli(E p = 0.5): sd sqrt(0.25 / n) = 0.0079; 5 sd = 0.04. Seeds are
        # fixed, so this is deterministic; 5 sd keeps it robust to a change of seed scheme.
        assert abs(apply.mean() - 0.5) < 5 * np.sqrt(0.25 / n)
        # And Bernoulli(p) given p, not a fair coin: for p in [0.2, 0.35) the rate is about 0.275,
        # for p in [0.65, 0.8) about 0.725 (each bin holds about n / 4 draws; 5 sd = 0.045).
        low, high = prob < 0.35, prob >= 0.65
        assert abs(apply[low].mean() - 0.275) < 5 * np.sqrt(0.275 * 0.725 / low.sum())
        assert abs(apply[high].mean() - 0.725) < 5 * np.sqrt(0.275 * 0.725 / high.sum())


def test_output_changes_exactly_when_the_plan_applies_an_op():
    """End to end, over 300 seeds in tf.data: every op changes this image at M = 15, so the
    output differs from the input exactly when an op fired (paper: unless it was Identity)."""
    image = tf.constant(_low_contrast())
    n = 300
    for mode in ra.MODES:
        plan = _plans(mode, n)
        outputs = tf.data.Dataset.range(n).map(
            lambda i, mode=mode: ra.randaugment(image, tf.stack([i, tf.constant(1, tf.int64)]),
                                                num_layers=1, magnitude=15, mode=mode))
        changed = np.array([not np.array_equal(out, image.numpy())
                            for out in outputs.as_numpy_iterator()])
        fired = plan['apply'].numpy()[:, 0]
        if mode == 'paper':
            fired = plan['op_index'].numpy()[:, 0] != list(ra.OPS[mode]).index('Identity')
        np.testing.assert_array_equal(changed, fired)
        if mode == 'tf_prob':  # Bernoulli(0.5) over 300: sd 0.029, 5 sd = 0.14.
            assert abs(changed.mean() - 0.5) < 5 * np.sqrt(0.25 / n)
        elif mode == 'tf':
            assert changed.all()


@pytest.mark.parametrize('mode, critical', [('tf', 56.5), ('paper', 52.7)])
def test_op_selection_is_uniform(mode, critical):
    """Chi-square of op counts over 2 layers x 3000 seeds, against its 1 - 1e-6 quantile
    (56.5 for 15 degrees of freedom, 52.7 for 13; scipy.stats.chi2.ppf)."""
    counts = np.bincount(_plans(mode, 3000, 2)['op_index'].numpy().ravel(),
                         minlength=len(ra.OPS[mode]))
    expected = counts.sum() / len(counts)
    assert ((counts - expected) ** 2 / expected).sum() < critical


def test_magnitude_15_extrapolates_in_tf_mode_and_clips_in_paper_mode():
    image = tf.constant(_china())
    for mode, degrees in (('tf', 45.0), ('paper', 30.0)):
        assert ra.level_to_args('Rotate', 15, mode) == pytest.approx((degrees,))
        turns = {sign: ra.rotate(image, sign * degrees).numpy() for sign in (1, -1)}
        seen = []
        for i in range(16):
            out = ra.apply_op('Rotate', image, 15, _seed(i), mode).numpy()
            sign = [s for s, turned in turns.items() if np.array_equal(out, turned)]
            assert len(sign) == 1
            seen += sign
        assert set(seen) == {1, -1}  # The sign is random.


@pytest.mark.parametrize('name, magnitude, mode, expected', [
    # The reference's level -> argument maps, including its extrapolation and uint8 quirks.
    ('ShearX', 15, 'tf', 0.45), ('TranslateY', 15, 'tf', 150.0), ('Color', 15, 'tf', 2.8),
    ('Sharpness', 5, 'tf', 1.0), ('Posterize', 15, 'tf', 6), ('Posterize', 10, 'tf', 4),
    ('Posterize', 2, 'tf', 1), ('Posterize', 28, 'tf', 1), ('Solarize', 7, 'tf', 179),
    ('Solarize', 10, 'tf', 0), ('Solarize', 15, 'tf', 128), ('SolarizeAdd', 15, 'tf', 165),
    ('Cutout', 15, 'tf', 60), ('TranslateX', 15, 'paper', 100.0), ('Brightness', 15, 'paper', 1.9),
])
def test_level_to_args(name, magnitude, mode, expected):
    assert ra.level_to_args(name, magnitude, mode) == pytest.approx((expected,))


def test_errors_name_the_valid_choices():
    image = tf.constant(_china())
    with pytest.raises(ValueError, match='valid modes: tf, tf_prob, paper'):
        ra.randaugment(image, _seed(0), num_layers=2, magnitude=9, mode='timm')
    with pytest.raises(ValueError, match='valid: Identity'):
        ra.apply_op('Invert', image, 9, _seed(0), mode='paper')
    with pytest.raises(ValueError, match='uint8'):
        ra.randaugment(tf.cast(image, tf.float32), _seed(0), num_layers=2, magnitude=9)
    with pytest.raises(ValueError, match='>= 0'):
        ra.randaugment(image, _seed(0), num_layers=2, magnitude=-1)
