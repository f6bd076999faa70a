"""Looking inside trained ConvNets (issue 15): the features API, each view's arithmetic against a
hand computation, and each view on a LeNet-5 trained here on digits.

The trained LeNet sees digits as LeNet-5 was designed to (LeCun et al. 1998, Sec. II.A): the digit
in the middle of an empty field (`dataset.margin=6`: 20x20 digits in the 32x32 input). "Digit"
and "border" pixels are read off the input intensities, never off the model: digit = intensity
above half the range; border = no ink within 3 pixels.
"""

import glob
import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxconv import models
from jaxconv.inspect import __main__ as cli
from jaxconv.inspect import adversarial, attribution, embedding, synthesis
from jaxconv.inspect.receptive_field import receptive_field, to_input_grid
from jaxconv.inspect.run import eval_images, load_run, pixel_range, to_pixels
from jaxconv.models import LayerNotFoundError, features, list_layers
from jaxconv.models.features import features_and_logits
from jaxconv.train import loop

# Every test here shares one trained run: keep them on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group('inspect')

TRAIN_EPOCHS = 6  # 135 steps of batch 64: about 98% test top-1.


def _conv(x, params):
    return jax.lax.conv_general_dilated(x, params['kernel'], (1, 1), 'VALID',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + params['bias']


def _lenet_by_hand(params, x):
    """LeNet-5's forward pass written out (tanh, 2x2 average pooling): C1, C3, C5, F6, output."""
    def pool(a):
        return a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2, -1).mean((2, 4))

    c1 = _conv(x, params['c1'])
    c3 = _conv(pool(jnp.tanh(c1)), params['c3'])
    c5 = pool(jnp.tanh(c3)).reshape(len(x), -1) @ params['c5']['kernel'] + params['c5']['bias']
    f6 = jnp.tanh(c5) @ params['f6']['kernel'] + params['f6']['bias']
    logits = jnp.tanh(f6) @ params['output']['kernel'] + params['output']['bias']
    return {'c1': c1, 'c3': c3, 'c5': c5, 'f6': f6, 'pooled': jnp.tanh(f6), 'logits': logits}


@pytest.fixture(scope='module')
def lenet():
    model = models.create_model('lenet5', num_classes=10)
    x = jax.random.normal(jax.random.key(1), (3, 32, 32, 1))
    return model, model.init(jax.random.key(0), x), x


# ---- The features API ------------------------------------------------------------------------

def test_features_are_lenets_activations_computed_by_hand(lenet):
    model, variables, x = lenet
    expected = jax.jit(_lenet_by_hand)(variables['params'], x)
    got = jax.jit(lambda v, x: {layer: features(model, v, x, layer) for layer in expected})(
        variables, x)
    for layer, value in expected.items():
        np.testing.assert_allclose(got[layer], value, atol=1e-5, err_msg=layer)


def test_list_layers_gives_the_papers_map_sizes(lenet):
    """LeCun et al. 1998, Fig. 2: C1 6@28x28, C3 16@10x10, C5 120, F6 84, 10 outputs."""
    model, variables, _ = lenet
    assert list_layers(model, variables, (32, 32, 1)) == {
        'pooled': (84,), 'logits': (10,), 'c1': (28, 28, 6), 'c3': (10, 10, 16), 'c5': (120,),
        'f6': (84,), 'output': (10,)}


class _ConvHeadNet(nn.Module):
    """NiN/SqueezeNet-style: the classifier is a 1x1 convolution averaged over space."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3), name='body')(x))
        return nn.Conv(5, (1, 1), name='head')(x).mean(axis=(1, 2))


def test_pooled_is_the_input_of_a_convolutional_head_averaged_over_space():
    model = _ConvHeadNet()
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    variables = jax.jit(model.init)(jax.random.key(1), x)

    @jax.jit
    def by_hand(params, x):
        return nn.relu(nn.Conv(4, (3, 3)).apply({'params': params['body']}, x)).mean(axis=(1, 2))

    pooled = jax.jit(lambda v, x: features(model, v, x, 'pooled'))(variables, x)
    np.testing.assert_allclose(pooled, by_hand(variables['params'], x), atol=1e-6)


def test_a_perturbation_of_pooled_features_has_the_heads_kernel_as_gradient(lenet):
    """d(sum of logits)/d(pooled) = the output layer's kernel summed over classes."""
    model, variables, x = lenet

    def total(perturbation):
        return features_and_logits(model, variables, x, 'pooled', perturbation)[1].sum()

    gradient = jax.grad(total)(jnp.zeros((3, 84)))
    expected = variables['params']['output']['kernel'].sum(axis=1)
    np.testing.assert_allclose(gradient, np.broadcast_to(expected, (3, 84)), atol=1e-5)


def test_unknown_layer_names_close_matches_and_the_valid_names(lenet):
    model, variables, x = lenet
    with pytest.raises(LayerNotFoundError) as error:
        features(model, variables, x, 'outputs')
    assert str(error.value) == ("unknown layer 'outputs'; did you mean output? valid: pooled, "
                                'logits, c1, c3, c5, f6, output')


# ---- Each view's arithmetic, against a hand computation ----------------------------------------

def test_receptive_fields_of_lenet_match_the_architecture(lenet):
    """C1: 5x5 kernels, stride 1, unit (0, 0) centred on pixel 2. C3: 5x5 kernels over 2x2-pooled
    C1, so 5 + 1 + (5 - 1) * 2 = 14 pixels, stride 2, unit (0, 0) centred on pixel 6.5."""
    model, variables, _ = lenet
    c1 = receptive_field(model, variables, 'c1', (32, 32, 1))
    c3 = receptive_field(model, variables, 'c3', (32, 32, 1))
    assert (c1.size, c1.stride, c1.first_centre) == ((5, 5), (1.0, 1.0), (2.0, 2.0))
    assert (c3.size, c3.stride, c3.first_centre) == ((14, 14), (2.0, 2.0), (6.5, 6.5))
    assert c3.box(9, 0) == (18, 0, 14, 14)  # The last row: input rows 18..31.


class _ConvReLU(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(6, (3, 3), name='conv')(x))


class _GapNet(nn.Module):
    """Conv-ReLU, global average pooling, dense: the CAM architecture of Zhou et al. 2016."""

    @nn.compact
    def __call__(self, x, train=False):
        x = _ConvReLU(name='features')(x)  # A module, so that its output is the rectified map.
        return nn.Dense(4, name='fc')(x.mean(axis=(1, 2)))


def test_gradcam_of_a_gap_network_is_its_class_activation_map():
    """Selvaraju et al. 2017, Sec. 3.1: with global average pooling, alpha_k^c = w_k^c / Z, so
    Grad-CAM = ReLU(sum_k w_k^c A^k) / Z with Z the map's area."""
    model = _GapNet()
    x = jax.random.normal(jax.random.key(0), (3, 5, 7, 2))
    variables = jax.jit(model.init)(jax.random.key(1), x)
    classes = jnp.array([0, 3, 1])

    @jax.jit
    def class_activation_map(params, x):
        maps = nn.relu(nn.Conv(6, (3, 3)).apply({'params': params['features']['conv']}, x))
        weights = params['fc']['kernel'][:, classes].T  # w_k^c of each image's class: (N, K).
        return jnp.einsum('nhwk,nk->nhw', maps, weights)

    cam = class_activation_map(variables['params'], x)
    np.testing.assert_allclose(attribution.gradcam(model, variables, x, classes, 'features'),
                               jax.nn.relu(cam) / (5 * 7), atol=1e-6)


class _LinearNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3, name='fc')(x.reshape(len(x), -1))


@pytest.fixture(scope='module')
def linear():
    model = _LinearNet()
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 2))
    variables = jax.jit(model.init)(jax.random.key(1), x)
    return model, variables, x, variables['params']['fc']['kernel'], jnp.array([2, 0])


def test_saliency_of_a_linear_model_is_its_weights_magnitude(linear):
    """S_c = w_c . I, so dS_c/dI = w_c and M_ij = max over channels |w_c(i, j, .)|."""
    model, variables, x, kernel, classes = linear
    expected = np.abs(kernel[:, classes].T.reshape(2, 6, 6, 2)).max(axis=-1)
    np.testing.assert_allclose(attribution.saliency(model, variables, x, classes), expected,
                               atol=1e-6)


def test_occlusion_slides_a_square_over_every_position(linear):
    model, variables, x, _, classes = linear
    maps = attribution.occlusion(model, variables, x, classes, size=3, stride=2, fill=0.5)
    assert maps.shape == (2, 2, 2)  # Corners at 0 and 2 along each side of 6 pixels.
    for n in range(2):
        for i, top in enumerate((0, 2)):
            for j, left in enumerate((0, 2)):
                occluded = np.array(x[n])
                occluded[top:top + 3, left:left + 3] = 0.5
                probability = jax.nn.softmax(model.apply(variables, occluded[None]))[0, classes[n]]
                np.testing.assert_allclose(maps[n, i, j], probability, atol=1e-6)


def test_fgsm_steps_eps_along_the_sign_of_the_cross_entropy_gradient(linear):
    """For softmax regression dJ/dx = W (softmax(Wx + b) - onehot(y)) (Goodfellow et al.)."""
    model, variables, x, kernel, labels = linear
    logits = model.apply(variables, x)
    gradient = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, 3)) @ kernel.T
    eps, low, high = jnp.float32(0.05), jnp.float32(-1.0), jnp.float32(1.0)
    expected = np.clip(x + eps * np.sign(gradient.reshape(x.shape)), low, high)
    attacked = jax.jit(lambda v: adversarial.fgsm(model, v, x, labels, eps, low, high))(variables)
    np.testing.assert_allclose(attacked, expected, atol=1e-6)
    attacked = jax.jit(lambda v: adversarial.pgd(model, v, x, labels, eps, low, high, steps=5,
                                                 key=jax.random.key(0)))(variables)
    assert float(jnp.abs(attacked - jnp.clip(x, low, high)).max()) <= 0.05 + 1e-6
    assert float(attacked.min()) >= -1.0 and float(attacked.max()) <= 1.0


# ---- On a trained LeNet-5 ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def trained(digits_dir, tmp_path_factory):
    """A LeNet-5 trained on framed digits through the trainer, and its eval split."""
    from configs import lenet5_digits

    config = lenet5_digits.get_config()
    config.dataset.data_dir = digits_dir
    config.dataset.margin = 6
    config.wandb.mode = 'disabled'
    config.train.epochs = TRAIN_EPOCHS
    config.train.eval_every = 1000
    workdir = str(tmp_path_factory.mktemp('inspect') / 'lenet5_framed')
    summary = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    run = load_run(workdir)
    images, labels = eval_images(run, None)
    ink = to_pixels(run, images)[..., 0]
    digit = ink > 0.5
    border = np.stack([~ndimage.binary_dilation(image > 0, iterations=3) for image in ink])
    return {'workdir': workdir, 'summary': summary, 'run': run, 'images': images,
            'labels': labels, 'ink': ink, 'digit': digit, 'border': border}


def test_restored_run_scores_what_the_trainer_measured(trained):
    run = trained['run']
    accuracy = (np.asarray(run.apply(trained['images'])).argmax(-1) == trained['labels']).mean()
    assert len(trained['images']) == 359
    assert accuracy == pytest.approx(trained['summary']['final_top1'], abs=1e-6)
    assert run.step == trained['summary']['steps']
    assert np.all(trained['ink'][:, :6] == 0) and np.all(trained['ink'][:, :, -6:] == 0)


def test_occluding_the_digit_costs_more_probability_than_occluding_the_border(trained):
    size, stride, count = 8, 2, 120  # 169 positions of the square on each of 120 images.
    maps = np.asarray(attribution.occlusion(
        trained['run'].model, trained['run'].variables, trained['images'][:count],
        trained['labels'][:count], size=size, stride=stride))
    on_digit, on_border = [], []
    for probability, ink in zip(maps, trained['ink'][:count], strict=True):
        # Ink under each square position; the quarter with most ink is "on the digit".
        mass = np.array([[ink[i:i + size, j:j + size].sum() for j in range(0, 25, stride)]
                         for i in range(0, 25, stride)])
        if (mass == 0).any():
            on_digit.append(probability[mass >= np.quantile(mass, 0.75)].mean())
            on_border.append(probability[mass == 0].mean())
    assert len(on_digit) > 100
    assert np.mean(on_digit) < np.mean(on_border) - 0.03


def _mean_on(maps, masks):
    return np.mean([m[mask].mean() for m, mask in zip(maps, masks, strict=True)])


def test_saliency_and_gradcam_weigh_digit_pixels_above_border_pixels(trained):
    """Per pixel, averaged over the eval split. Grad-CAM is taken at C1: C3's units see 14x14
    pixels, so none sees only border and a 10x10 map cannot separate a 6-pixel margin from the
    strokes next to it (measured: C3 puts about equal mass on both)."""
    run, images, labels = trained['run'], trained['images'], trained['labels']
    digit, border = trained['digit'], trained['border']
    saliency = np.asarray(attribution.saliency(run.model, run.variables, images, labels))
    assert _mean_on(saliency, digit) > 1.5 * _mean_on(saliency, border)
    cam = attribution.gradcam(run.model, run.variables, images, labels, 'c1')
    field = receptive_field(run.model, run.variables, 'c1', run.image_shape)
    cam = to_input_grid(np.asarray(cam), field, 32, 32)
    assert _mean_on(cam, digit) > 1.5 * _mean_on(cam, border)


def test_fgsm_at_eps_point_one_lowers_accuracy_and_eps_zero_does_not(trained):
    run, images, labels = trained['run'], trained['images'], trained['labels']
    low, high = pixel_range(run)
    std = run.config.dataset.std
    clean = trained['summary']['final_top1']
    at_zero, unchanged = adversarial.accuracy_under_attack(
        run.model, run.variables, images, labels, adversarial.epsilon_in_input_units(0.0, std),
        low, high, attack='fgsm')
    at_tenth, attacked = adversarial.accuracy_under_attack(
        run.model, run.variables, images, labels, adversarial.epsilon_in_input_units(0.1, std),
        low, high, attack='fgsm')
    assert at_zero == pytest.approx(clean, abs=1e-9)
    np.testing.assert_array_equal(unchanged, images)
    assert at_tenth < clean - 0.3
    # Every pixel moved by at most a tenth of its range, and stayed a valid pixel.
    assert np.abs(to_pixels(run, attacked) - to_pixels(run, images)).max() <= 0.1 + 1e-5


def test_class_maximisation_raises_each_class_score_to_the_top(trained):
    """From the mean image, which the model gives one class, to an input per class that the
    model assigns to that class, with every pixel in range."""
    run = trained['run']
    low, high = pixel_range(run)
    start = np.asarray(run.apply(jnp.zeros((1, *run.image_shape)))).argmax(-1)
    images = synthesis.maximize_class(run.model, run.variables, jnp.arange(10), run.image_shape,
                                      steps=20, low=low, high=high)
    probabilities = np.asarray(jax.nn.softmax(run.apply(images)))
    assert len(set(start)) == 1
    np.testing.assert_array_equal(probabilities.argmax(-1), np.arange(10))
    assert probabilities[np.arange(10), np.arange(10)].min() > 0.9
    assert float(images.min()) >= low[0] - 1e-6 and float(images.max()) <= high[0] + 1e-6


def test_pooled_features_of_the_eval_split_separate_the_classes(trained):
    """A 1-nearest-neighbour rule in the 2-D PCA map of the features beats chance by far."""
    run = trained['run']
    points = embedding.project(embedding.extract(run.model, run.variables, trained['images']),
                               'pca')
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = trained['labels'][distances.argmin(axis=1)]
    assert (nearest == trained['labels']).mean() > 0.5


# ---- The command line -------------------------------------------------------------------------

def _assert_png_drawn(path: str, min_width: int, min_height: int) -> None:
    """A PNG of at least the given size whose pixels are not all (nearly) one colour."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.width >= min_width and image.height >= min_height, (path, image.size)
        pixels = np.asarray(image.convert('RGB'), np.float32)
    assert pixels.std() > 10, path
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, path


@pytest.mark.parametrize('view, extra', [  # Few images and steps: this checks the drawing.
    ('filters', []),
    ('activations', ['--layer', 'c3', '--num-images', '2']),
    ('top-patches', ['--num-images', '60', '--channels', '0', '5']),
    ('occlusion', ['--num-images', '3']),
    ('saliency', ['--num-images', '3']),
    ('gradcam', ['--num-images', '3']),
    ('class-max', ['--steps', '20', '--classes', '3', '5', '8']),
    ('adversarial', ['--num-images', '32', '--eps', '0', '0.1', '--pgd-steps', '2']),
    ('embedding', ['--num-images', '60']),
])
def test_each_view_writes_a_drawn_png_and_its_numbers(trained, tmp_path, capsys, view, extra):
    out = str(tmp_path / 'out')
    assert cli.main([view, '--workdir', trained['workdir'], '--out', out, *extra]) == 0
    written = capsys.readouterr().out.split()
    assert written[0] == os.path.join(out, f'{view}.png')
    _assert_png_drawn(written[0], 200, 100)
    data = np.load(os.path.join(out, f'{view}.npz'))
    assert all(np.isfinite(data[key]).all() for key in data.files)


def test_views_of_image_files_use_the_predicted_class(trained, tmp_path, capsys):
    """Files go through the eval preprocessing, so the dataset's stored 8x8 digits saved as PNGs
    reproduce the eval images, and the view explains the class the model predicts."""
    from PIL import Image

    from jaxconv.data import pipeline

    builder = pipeline.get_builder(trained['run'].config.dataset)
    stored = builder.as_dataset(split='test', shuffle_files=False).take(2).as_numpy_iterator()
    files = []
    for n, example in enumerate(stored):
        files.append(str(tmp_path / f'digit{n}.png'))
        Image.fromarray(example['image'][..., 0]).save(files[-1])
    out = str(tmp_path / 'out')
    assert cli.main(['saliency', '--workdir', trained['workdir'], '--out', out,
                     '--images', *files]) == 0
    predicted = np.asarray(trained['run'].apply(trained['images'][:2])).argmax(-1)
    np.testing.assert_array_equal(np.load(os.path.join(out, 'saliency.npz'))['classes'],
                                  predicted)


def test_compare_puts_the_same_view_of_two_runs_side_by_side(trained, tmp_path, capsys):
    other = str(tmp_path / 'other_rung')
    shutil.copytree(trained['workdir'], other)
    out = str(tmp_path / 'out')
    assert cli.main(['compare', 'filters', '--workdir', trained['workdir'], '--workdir', other,
                     '--out', out]) == 0
    combined, *written = capsys.readouterr().out.split()
    assert combined == os.path.join(out, 'compare-filters.png')
    assert os.path.join(out, 'other_rung', 'filters.png') in written
    from PIL import Image

    with Image.open(os.path.join(out, 'other_rung', 'filters.png')) as single:
        width = single.width
    _assert_png_drawn(combined, int(1.8 * width), 50)


def test_wandb_logs_the_figure_into_the_runs_own_wandb_run(trained, tmp_path, monkeypatch):
    """Offline, as a run without credentials logs: the PNG lands in the run id's offline run."""
    workdir = str(tmp_path / 'run')
    shutil.copytree(trained['workdir'], workdir)
    with open(os.path.join(workdir, 'config.json')) as f:
        config = json.load(f)
    config['wandb']['mode'] = 'offline'
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
        json.dump(config, f)
    with open(os.path.join(workdir, 'wandb_run_id'), 'w') as f:
        f.write('inspect0test1')
    monkeypatch.setenv('HOME', str(tmp_path))  # No ~/.netrc: no credentials.
    assert cli.main(['filters', '--workdir', workdir, '--wandb']) == 0
    logged = glob.glob(os.path.join(workdir, 'wandb', 'offline-run-*-inspect0test1', 'files',
                                    'media', 'images', 'inspect', 'filters_*.png'))
    assert len(logged) == 1


def test_layers_lists_the_names_layer_accepts(trained, capsys):
    assert cli.main(['layers', '--workdir', trained['workdir']]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ['pooled', 'logits', 'c1', 'c3', 'c5', 'f6',
                                                   'output']


@pytest.mark.parametrize('args, message', [
    (['gradcam', '--layer', 'c33'], "unknown layer 'c33'; did you mean c3?"),
    (['filters', '--ema'], 'kept no EMA weights (train.ema_decay=0); drop --ema'),
    (['compare', 'filters'], 'compare takes 2 --workdir, got 1'),
    (['top-patches', '--channels', '99', '--num-images', '10'], 'channel 99 does not exist'),
])
def test_bad_input_exits_with_one_line(trained, tmp_path, capsys, args, message):
    assert cli.main([*args, '--workdir', trained['workdir'], '--out', str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith('jaxconv.inspect: error: ') and message in error


def test_a_directory_that_is_not_a_run_is_named(trained, tmp_path, capsys):
    assert cli.main(['filters', '--workdir', str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f'jaxconv.inspect: error: {tmp_path} is not a run directory (no config.json); pass the '
        '--workdir of a run started with python -m jaxconv.main')
    shutil.copy(os.path.join(trained['workdir'], 'config.json'), tmp_path)
    assert cli.main(['filters', '--workdir', str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().startswith(
        f'jaxconv.inspect: error: {tmp_path} has no checkpoints/ yet; train it first')
    assert os.listdir(tmp_path) == ['config.json']  # Nothing written.


def test_margin_frames_the_resized_digit_in_zeros(digits_dir):
    """dataset.margin=6: the stored 8x8 digit resized to 20x20, 6 zero pixels around it."""
    import tensorflow as tf

    from configs import lenet5_digits
    from jaxconv.data import pipeline

    config = lenet5_digits.get_config()
    config.dataset.data_dir, config.dataset.margin = digits_dir, 6
    builder = pipeline.get_builder(config.dataset)
    batch = next(pipeline.eval_batches(builder, config.dataset, global_batch_size=4)
                 .dataset.as_numpy_iterator())
    pixels = batch['image'][0, ..., 0].astype(np.float32)  # uint8: rounded 0..255.
    stored = next(builder.as_dataset(split='test', shuffle_files=False).as_numpy_iterator())
    inner = tf.image.resize(stored['image'], [20, 20], method='bilinear').numpy()[..., 0]
    np.testing.assert_allclose(pixels[6:26, 6:26], np.round(np.clip(inner, 0, 255)), atol=1e-3)
    frame = np.ones((32, 32), bool)
    frame[6:26, 6:26] = False
    assert np.abs(pixels[frame]).max() < 1e-3
