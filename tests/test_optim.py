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
