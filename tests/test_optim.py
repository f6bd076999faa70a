"""Learning-rate schedules, the weight-decay mask and one optimizer step, against hand values."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jaxconv.models import create_model
from jaxconv.train import optim


@pytest.fixture
def optim_config():
    config = common.get_config().optim
    config.base_lr, config.lr_batch_base, config.warmup_epochs = 0.1, 256, 5
    return config


def test_peak_lr_scales_linearly_with_the_global_batch(optim_config):
    assert optim.peak_learning_rate(optim_config, 1024) == pytest.approx(0.4)
    assert optim.peak_learning_rate(optim_config, 64) == pytest.approx(0.025)


def test_warmup_then_cosine(optim_config):
    # 100 steps per epoch, 5 warmup epochs, 1,000 steps; peak 0.2 at batch 512.
    lr = optim.learning_rate_schedule(optim_config, global_batch_size=512, total_steps=1000,
                                      steps_per_epoch=100)
    assert float(lr(0)) == 0.0
    assert float(lr(250)) == pytest.approx(0.1)  # Halfway up the warmup.
    assert float(lr(500)) == pytest.approx(0.2)  # Warmup end: the peak.
    assert float(lr(750)) == pytest.approx(0.1)  # Cosine midpoint: half the peak.
    assert float(lr(600)) == pytest.approx(0.1 * (1 + math.cos(math.pi * 100 / 500)))
    assert float(lr(1000)) == pytest.approx(0.0, abs=1e-9)


def test_warmup_then_step_decay_at_fractions_of_training(optim_config):
    optim_config.schedule = 'step'
    optim_config.step_boundaries = (30 / 90, 60 / 90, 80 / 90)
    optim_config.warmup_epochs = 1
    # 90 epochs of 10 steps: boundaries at steps 300, 600, 800 (the ResNet baseline's 30/60/80).
    lr = optim.learning_rate_schedule(optim_config, global_batch_size=256, total_steps=900,
                                      steps_per_epoch=10)
    assert float(lr(5)) == pytest.approx(0.05)
    expected = {10: 0.1, 299: 0.1, 300: 0.01, 599: 0.01, 600: 1e-3, 799: 1e-3, 800: 1e-4,
                899: 1e-4}
    for step, value in expected.items():
        assert float(lr(step)) == pytest.approx(value), step


def test_constant_schedule_and_bad_values(optim_config):
    optim_config.schedule, optim_config.warmup_epochs = 'constant', 0
    lr = optim.learning_rate_schedule(optim_config, global_batch_size=256, total_steps=10,
                                      steps_per_epoch=1)
    assert float(lr(0)) == float(lr(9)) == pytest.approx(0.1)
    optim_config.schedule = 'cosin'
    with pytest.raises(ValueError, match="unknown optim.schedule 'cosin'; valid: cosine, step"):
        optim.learning_rate_schedule(optim_config, global_batch_size=256, total_steps=10,
                                     steps_per_epoch=1)
    optim_config.schedule, optim_config.warmup_epochs = 'cosine', 20
    with pytest.raises(ValueError, match=r'warmup_epochs=20.0 is 20 steps, .* in \[0, 10\)'):
        optim.learning_rate_schedule(optim_config, global_batch_size=256, total_steps=10,
                                     steps_per_epoch=1)


class _ConvBNDense(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(3)(x.mean((1, 2)))


def test_weight_decay_mask_is_exactly_the_conv_and_dense_kernels():
    params = _ConvBNDense().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
    mask = optim.weight_decay_mask(params)
    decayed = {jax.tree_util.keystr(path) for path, on in
               jax.tree_util.tree_leaves_with_path(mask) if on}
    assert decayed == {"['Conv_0']['kernel']", "['Dense_0']['kernel']"}
    lenet = create_model('lenet5', num_classes=10)
    params = lenet.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))['params']
    mask = optim.weight_decay_mask(params)
    assert sum(jax.tree.leaves(mask)) == 5 == len(jax.tree.leaves(params)) // 2


class _ConvBiasBNDense(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(4, (3, 3), use_bias=True, name='conv')(x)
        x = nn.BatchNorm(use_running_average=not train, name='bn')(x)
        x = nn.BatchNorm(use_running_average=not train, use_scale=False, name='bn_no_scale')(x)
        return nn.Dense(3, name='head')(x.mean((1, 2)))


def test_non_norm_mask_decays_everything_but_batchnorm_as_tf():
    """TF: `weight_decay * add_n([l2_loss(v) for v in trainable_variables() if
    'batch_normalization' not in v.name])` (resnet_main.py, efficientnet/main.py): conv and dense
    biases are decayed, BatchNorm's gamma and beta (with or without gamma) are not."""
    params = _ConvBiasBNDense().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
    mask = optim.weight_decay_mask(params, 'non_norm')
    decayed = {jax.tree_util.keystr(path) for path, on in
               jax.tree_util.tree_leaves_with_path(mask) if on}
    assert decayed == {"['conv']['kernel']", "['conv']['bias']", "['head']['kernel']",
                       "['head']['bias']"}
    kernels_only = optim.weight_decay_mask(params, 'kernels')
    assert sum(jax.tree.leaves(kernels_only)) == 2
    with pytest.raises(ValueError, match="unknown optim.weight_decay_mask 'all'; valid: kernels"):
        optim.weight_decay_mask(params, 'all')


def test_non_norm_decay_step_by_hand(optim_config):
    optim_config.weight_decay, optim_config.momentum, optim_config.warmup_epochs = 0.01, 0.0, 0
    optim_config.schedule, optim_config.weight_decay_mask = 'constant', 'non_norm'
    lr = optim.learning_rate_schedule(optim_config, global_batch_size=256, total_steps=10,
                                      steps_per_epoch=1)
    tx = optim.make_optimizer(optim_config, lr)
    params = {'dense': {'kernel': jnp.array([1.0]), 'bias': jnp.array([0.5])},
              'bn': {'scale': jnp.array([2.0]), 'bias': jnp.array([3.0])}}
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # The gradient of wd * ||w||^2 / 2 is wd * w; lr 0.1.
    np.testing.assert_allclose(updates['dense']['kernel'], [-0.1 * 0.01 * 1.0], rtol=1e-6)
    np.testing.assert_allclose(updates['dense']['bias'], [-0.1 * 0.01 * 0.5], rtol=1e-6)
    np.testing.assert_allclose(updates['bn']['scale'], [0.0])
    np.testing.assert_allclose(updates['bn']['bias'], [0.0])


def test_one_sgd_step_by_hand(optim_config):
    optim_config.weight_decay, optim_config.momentum, optim_config.warmup_epochs = 0.01, 0.9, 0
    optim_config.schedule = 'constant'
    lr = optim.learning_rate_schedule(optim_config, global_batch_size=256, total_steps=10,
                                      steps_per_epoch=1)
    tx = optim.make_optimizer(optim_config, lr)
    params = {'dense': {'kernel': jnp.array([1.0, -2.0]), 'bias': jnp.array([0.5])}}
    grads = {'dense': {'kernel': jnp.array([0.1, 0.2]), 'bias': jnp.array([0.3])}}
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    # Step 1: momentum buffer = g + wd * w (kernel only); update = -lr * buffer.
    np.testing.assert_allclose(updates['dense']['kernel'], -0.1 * np.array([0.11, 0.18]),
                               rtol=1e-6)
    np.testing.assert_allclose(updates['dense']['bias'], [-0.03], rtol=1e-6)
    updates, _ = tx.update(grads, state, params)
    # Step 2 (same params and grads): buffer = 0.9 * buffer + (g + wd * w).
    np.testing.assert_allclose(updates['dense']['kernel'], -0.1 * 1.9 * np.array([0.11, 0.18]),
                               rtol=1e-6)
    optim_config.name = 'adam'
    with pytest.raises(ValueError, match="unknown optim.name 'adam'; valid: sgd"):
        optim.make_optimizer(optim_config, lr)


def _constant_lr(optim_config, lr=0.1):
    optim_config.schedule, optim_config.warmup_epochs, optim_config.base_lr = 'constant', 0, lr
    return optim.learning_rate_schedule(optim_config, global_batch_size=256, total_steps=10,
                                        steps_per_epoch=1)


def test_exponential_staircase_counts_from_step_0_as_tf(optim_config):
    """TF EfficientNet (efficientnet/utils.py `build_learning_rate`), evaluated by hand:

    lr = peak * step / warmup_steps while step < warmup_steps, else
    peak * 0.97 ** floor(step / decay_steps) with decay_steps = steps_per_epoch * 2.4 unrounded
    (`tf.train.exponential_decay(initial_lr, global_step, ..., staircase=True)` counts from 0).
    B0's numbers: batch 2048, 1,281,167 images, peak 0.016 * 2048 / 256 = 0.128.
    """
    optim_config.schedule, optim_config.exp_decay_rate, optim_config.exp_decay_epochs = (
        'exponential', 0.97, 2.4)
    optim_config.base_lr = 0.016
    steps_per_epoch = 1_281_167 / 2048  # 625.57; a stair is 1501.37 steps.
    lr = optim.learning_rate_schedule(optim_config, global_batch_size=2048, total_steps=218_949,
                                      steps_per_epoch=steps_per_epoch)
    peak, warmup_steps = 0.128, round(5 * steps_per_epoch)

    def tf_lr(step: int) -> float:
        if step < warmup_steps:
            return peak * step / warmup_steps
        return peak * 0.97 ** math.floor(step / (steps_per_epoch * 2.4))

    assert float(lr(warmup_steps - 1)) == pytest.approx(tf_lr(warmup_steps - 1))
    # Warmup ends two stairs down: 5 / 2.4 epochs have passed, so peak * 0.97^2, not the peak.
    assert float(lr(warmup_steps)) == pytest.approx(peak * 0.97 ** 2) == tf_lr(warmup_steps)
    # 3 * 1501.37 = 4504.1: step 4504 is on the second stair, 4505 on the third (rounding the
    # stair to 1501 steps would move it to 4503).
    assert float(lr(4504)) == pytest.approx(peak * 0.97 ** 2) == tf_lr(4504)
    assert float(lr(4505)) == pytest.approx(peak * 0.97 ** 3) == tf_lr(4505)
    for step in (10_000, 100_000, 218_948):
        assert float(lr(step)) == pytest.approx(tf_lr(step), rel=1e-5), step


def test_tf_rmsprop_two_steps_by_hand(optim_config):
    optim_config.name, optim_config.weight_decay = 'rmsprop_tf', 0.0
    optim_config.rmsprop_decay, optim_config.momentum, optim_config.rmsprop_eps = 0.9, 0.9, 1e-3
    tx = optim.make_optimizer(optim_config, _constant_lr(optim_config, 0.1))
    params, grads = {'w': jnp.array([1.0, 1.0])}, {'w': jnp.array([0.5, -2.0])}
    state = tx.init(params)
    g = np.array([0.5, -2.0])
    mean_square = 0.9 * 1.0 + 0.1 * g ** 2  # Starts at 1, not 0.
    momentum = 0.1 * g / np.sqrt(mean_square + 1e-3)  # eps inside the root, lr inside momentum.
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates['w'], -momentum, rtol=1e-6)
    mean_square = 0.9 * mean_square + 0.1 * g ** 2
    momentum = 0.9 * momentum + 0.1 * g / np.sqrt(mean_square + 1e-3)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates['w'], -momentum, rtol=1e-6)


def test_decoupled_decay_is_applied_after_preconditioning(optim_config):
    optim_config.name, optim_config.weight_decay = 'adamw', 0.5
    params = {'kernel': jnp.array([2.0]), 'bias': jnp.array([2.0])}
    grads = {'kernel': jnp.array([4.0]), 'bias': jnp.array([4.0])}
    for mode, expected_kernel in (('decoupled', -0.1 * (1.0 + 0.5 * 2.0)),  # adam(g)=1 + wd*w.
                                  ('l2', -0.1 * 1.0)):  # adam(g + wd*w) is still ~1 at step 1.
        optim_config.weight_decay_mode = mode
        tx = optim.make_optimizer(optim_config, _constant_lr(optim_config, 0.1))
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates['kernel'], [expected_kernel], rtol=1e-5)
        np.testing.assert_allclose(updates['bias'], [-0.1], rtol=1e-5)  # Never decayed.
    optim_config.name = 'rmsprop_tf'
    with pytest.raises(ValueError, match='decoupled is not defined for rmsprop_tf'):
        optim_config.weight_decay_mode = 'decoupled'
        optim.make_optimizer(optim_config, _constant_lr(optim_config))


def test_clipping_multipliers_and_lars(optim_config):
    optim_config.weight_decay, optim_config.momentum = 0.0, 0.0
    optim_config.grad_clip_norm = 1.0
    optim_config.lr_multipliers = (('head/.*', 10.0), ('stem/.*', 0.0))
    params = {'head': {'kernel': jnp.ones(2)}, 'stem': {'kernel': jnp.ones(2)},
              'body': {'kernel': jnp.ones(2)}}
    grads = jax.tree.map(lambda p: 3.0 * p, params)  # Global norm sqrt(6 * 9).
    tx = optim.make_optimizer(optim_config, _constant_lr(optim_config, 0.1))
    updates, _ = tx.update(grads, tx.init(params), params)
    clipped = 3.0 / np.sqrt(54.0)
    np.testing.assert_allclose(updates['body']['kernel'], -0.1 * clipped, rtol=1e-6)
    np.testing.assert_allclose(updates['head']['kernel'], -1.0 * clipped, rtol=1e-6)
    np.testing.assert_allclose(updates['stem']['kernel'], 0.0)
    optim_config.name, optim_config.lr_multipliers, optim_config.grad_clip_norm = 'lars', (), 0.0
    tx = optim.make_optimizer(optim_config, _constant_lr(optim_config, 0.1))
    updates, _ = tx.update(grads, tx.init(params), params)
    # Trust ratio 1e-3 * ||w|| / ||g|| = 1e-3 / 3 rescales each kernel's step.
    np.testing.assert_allclose(updates['body']['kernel'], -0.1 * 1e-3 / 3 * 3.0, rtol=1e-5)
