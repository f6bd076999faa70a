"""The loss, accuracy counts and the train/eval steps' sums, against hand-computed values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv.train import mixing, steps
from jaxconv.train.state import init_train_state


def test_label_smoothed_cross_entropy_by_hand():
    logits = jnp.array([[2.0, 1.0, 0.0, -1.0]])
    log_p = np.log(np.exp([2.0, 1.0, 0.0, -1.0]) / np.exp([2.0, 1.0, 0.0, -1.0]).sum())
    targets = np.array([0.9 + 0.025, 0.025, 0.025, 0.025])  # eps = 0.1 spread over K = 4.
    expected = -(targets * log_p).sum()
    loss = steps.cross_entropy(logits, jnp.array([0]), label_smoothing=0.1)
    np.testing.assert_allclose(loss, [expected], rtol=1e-6)
    np.testing.assert_allclose(steps.cross_entropy(logits, jnp.array([1])), [-log_p[1]], rtol=1e-6)


def test_top_k_counts():
    logits = jnp.array([[0.1, 0.5, 0.2, 0.9, 0.0, 0.3], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    labels = jnp.array([2, 0])
    np.testing.assert_array_equal(steps.correct_in_top_k(logits, labels, 1), [0.0, 1.0])
    np.testing.assert_array_equal(steps.correct_in_top_k(logits, labels, 3), [0.0, 1.0])
    np.testing.assert_array_equal(steps.correct_in_top_k(logits, labels, 5), [1.0, 1.0])
    np.testing.assert_array_equal(steps.correct_in_top_k(logits[:, :3], labels, 5), [1.0, 1.0])


class _TwoAuxHeads(nn.Module):
    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        x = x.reshape(x.shape[0], -1)
        if train:
            self.sow('intermediates', 'aux_logits', nn.Dense(self.num_classes, name='aux1')(x))
            self.sow('intermediates', 'aux_logits', nn.Dense(self.num_classes, name='aux2')(x))
        return nn.Dense(self.num_classes, name='head')(x)


def test_aux_heads_add_their_weighted_losses():
    model = _TwoAuxHeads()
    x, labels = jax.random.normal(jax.random.key(0), (4, 2, 2, 1)), jnp.array([0, 1, 2, 1])
    variables = model.init(jax.random.key(1), x, train=True)
    logits, mutated = model.apply(variables, x, train=True, mutable=['intermediates'])
    aux = steps.aux_logits(mutated['intermediates'])
    assert len(aux) == 2
    loss = steps.classification_loss(logits, mutated['intermediates'], labels,
                                      label_smoothing=0.0, aux_loss_weight=0.3)
    ce = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()  # noqa: E731
    np.testing.assert_allclose(loss, ce(logits) + 0.3 * (ce(aux[0]) + ce(aux[1])), rtol=1e-6)


def test_eval_step_ignores_masked_examples():
    model = _TwoAuxHeads()
    x = jax.random.normal(jax.random.key(0), (4, 2, 2, 1))
    variables = model.init(jax.random.key(1), x)
    logits = model.apply(variables, x)
    labels = jnp.argmax(logits, -1).at[0].set((jnp.argmax(logits[0]) + 1) % 3)  # 0 is wrong.
    batch = {'image': x, 'label': labels, 'mask': jnp.array([0, 1, 1, 0])}
    sums = steps.eval_step(variables, steps.zero_metrics(steps.EVAL_METRICS), batch, model=model)
    assert float(sums['count']) == 2.0 and float(sums['correct_top1']) == 2.0
    expected_loss = steps.cross_entropy(logits, labels)[1:3].sum()
    np.testing.assert_allclose(sums['loss_sum'], expected_loss, rtol=1e-6)


def test_train_step_sums_and_counts_steps():
    model = _TwoAuxHeads()
    tx = optax.sgd(0.1)
    state = init_train_state(jax.random.key(0), model, tx, (2, 2, 1))
    batch = {'image': jax.random.normal(jax.random.key(1), (4, 2, 2, 1)),
             'label': jnp.array([0, 1, 2, 1])}
    sums = steps.zero_metrics(steps.TRAIN_METRICS)
    for _ in range(2):
        state, sums = steps.train_step(state, sums, batch, jax.random.key(2), model=model, tx=tx,
                                       label_smoothing=0.0, aux_loss_weight=0.0)
    assert int(state.step) == 2
    assert float(sums['count']) == 8.0 and float(sums['nonfinite_steps']) == 0.0
    assert steps.summarize(jax.device_get(sums))['loss'] == pytest.approx(
        float(sums['loss_sum']) / 8)


@pytest.mark.parametrize('warmup', [False, True])
def test_ema_after_k_updates_matches_the_closed_form(warmup):
    decay, k = 0.9, 6
    values = np.random.default_rng(0).normal(size=(k + 1, 3))
    average = jnp.asarray(values[0])  # Starts at the initial value.
    for n in range(1, k + 1):
        average = steps.update_ema(average, values[n], steps.ema_decay_at(jnp.asarray(n), decay,
                                                                          warmup))
    d = [min(decay, (1 + n) / (10 + n)) if warmup else decay for n in range(1, k + 1)]
    # a_k = prod(d) a_0 + sum_n (1 - d_n) prod_{m > n} d_m v_n.
    expected = np.prod(d) * values[0] + sum(
        (1 - d[n - 1]) * np.prod(d[n:]) * values[n] for n in range(1, k + 1))
    np.testing.assert_allclose(average, expected, rtol=1e-6)
    if warmup:
        assert float(steps.ema_decay_at(jnp.asarray(1), 0.9999, True)) == pytest.approx(2 / 11)
        assert float(steps.ema_decay_at(jnp.asarray(10**6), 0.9999, True)) == pytest.approx(0.9999)


def test_train_step_averages_params_and_batch_statistics():
    class ConvBN(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.BatchNorm(use_running_average=not train, momentum=0.0)(nn.Conv(2, (1, 1))(x))
            return nn.Dense(3)(x.mean((1, 2)))

    model, tx = ConvBN(), optax.sgd(0.5)
    state = init_train_state(jax.random.key(0), model, tx, (2, 2, 1), with_ema=True)
    history = [(state.params, state.batch_stats)]
    sums = steps.zero_metrics(steps.TRAIN_METRICS)
    for i in range(3):
        batch = {'image': jax.random.normal(jax.random.key(i), (4, 2, 2, 1)),
                 'label': jnp.array([0, 1, 2, 1])}
        state, sums = steps.train_step(state, sums, batch, jax.random.key(9), model=model, tx=tx,
                                       label_smoothing=0.0, aux_loss_weight=0.0, ema_decay=0.5,
                                       ema_warmup=False)
        history.append((state.params, state.batch_stats))
    for average, index in ((state.ema_params, 0), (state.ema_batch_stats, 1)):
        expected = jax.tree.map(lambda a, b, c, d: 0.125 * a + 0.125 * b + 0.25 * c + 0.5 * d,
                                *[h[index] for h in history])
        for got, want in zip(jax.tree.leaves(average), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def _images(batch=4, size=8):
    return jax.random.uniform(jax.random.key(0), (batch, size, size, 3))


def test_mixup_mixes_images_and_labels_with_one_lambda():
    images = _images()
    mixed, lam = mixing.mix_batch(jax.random.key(1), images, mixup_alpha=0.2, cutmix_alpha=0.0,
                                  prob=1.0, switch_prob=0.5)
    assert 0.0 < float(lam) < 1.0
    np.testing.assert_allclose(mixed, lam * images + (1 - lam) * images[::-1], rtol=1e-6)
    logits = jax.random.normal(jax.random.key(2), (4, 5))
    labels = jnp.array([0, 1, 2, 3])
    loss = steps.classification_loss(logits, {}, labels, label_smoothing=0.0,
                                     aux_loss_weight=0.0, lam=lam)
    ce = steps.cross_entropy
    expected = lam * ce(logits, labels).mean() + (1 - lam) * ce(logits, labels[::-1]).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    # Soft targets lam * onehot(y) + (1 - lam) * onehot(partner) give the same loss.
    targets = lam * jax.nn.one_hot(labels, 5) + (1 - lam) * jax.nn.one_hot(labels[::-1], 5)
    np.testing.assert_allclose(loss, optax.softmax_cross_entropy(logits, targets).mean(),
                               rtol=1e-5)


def test_cutmix_pastes_a_box_and_lambda_is_the_area_kept():
    images = _images(size=16)
    for seed in range(5):
        mixed, lam = mixing.mix_batch(jax.random.key(seed), images, mixup_alpha=0.0,
                                      cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)
        from_partner = np.all(np.isclose(mixed, images[::-1]), axis=-1)[0]
        own = np.all(np.isclose(mixed, images), axis=-1)[0]
        assert np.all(from_partner | own)
        rows, cols = np.nonzero(from_partner)
        if rows.size:  # The pasted region is one axis-aligned box.
            assert rows.size == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        np.testing.assert_allclose(lam, 1.0 - from_partner.mean(), rtol=1e-6)


def test_mixing_off_inactive_or_unlucky_leaves_the_batch_alone():
    images = _images()
    for kwargs in ({'mixup_alpha': 0.0, 'cutmix_alpha': 0.0, 'prob': 1.0},
                   {'mixup_alpha': 0.2, 'cutmix_alpha': 1.0, 'prob': 0.0},
                   {'mixup_alpha': 0.2, 'cutmix_alpha': 1.0, 'prob': 1.0, 'active': False}):
        mixed, lam = mixing.mix_batch(jax.random.key(3), images, switch_prob=0.5, **kwargs)
        np.testing.assert_array_equal(mixed, images)
        assert float(lam) == 1.0
    lambdas = [float(mixing.mix_batch(jax.random.key(s), images, mixup_alpha=0.2,
                                      cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)[1])
               for s in range(40)]
    assert len(set(lambdas)) > 10


def test_uint8_batches_are_normalised_on_device():
    """The pipeline sends uint8; (x - mean) / std per channel, by hand, happens in the step."""
    images = (np.arange(4 * 2 * 2 * 3) * 7 % 256).astype(np.uint8).reshape(4, 2, 2, 3)
    mean, std = (120.0, 110.0, 100.0), (60.0, 50.0, 40.0)
    by_hand = (images.astype(np.float64) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(steps.normalize_images(jnp.asarray(images), mean, std), by_hand,
                               rtol=1e-6)

    model, tx = _TwoAuxHeads(), optax.sgd(0.1)
    state = init_train_state(jax.random.key(0), model, tx, (2, 2, 3))
    labels = jnp.array([0, 1, 2, 1])
    zero = steps.zero_metrics(steps.TRAIN_METRICS)
    common = dict(model=model, tx=tx, label_smoothing=0.0, aux_loss_weight=0.3)
    from_uint8, sums_uint8 = steps.train_step(
        state, zero, {'image': jnp.asarray(images), 'label': labels}, jax.random.key(1),
        normalization=(mean, std), **common)
    from_float, sums_float = steps.train_step(
        state, zero, {'image': jnp.asarray(by_hand, jnp.float32), 'label': labels},
        jax.random.key(1), **common)
    np.testing.assert_allclose(sums_uint8['loss_sum'], sums_float['loss_sum'], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(from_uint8.params), jax.tree.leaves(from_float.params),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # float32 rounding of x - mean.
    with pytest.raises(TypeError, match=r'uint8 images need normalization=\(mean, std\)'):
        steps.train_step(state, zero, {'image': jnp.asarray(images), 'label': labels},
                         jax.random.key(1), **common)


def test_the_step_flags_weights_that_an_infinite_learning_rate_made_inf():
    model, tx = _TwoAuxHeads(), optax.sgd(float('inf'))
    state = init_train_state(jax.random.key(0), model, tx, (2, 2, 1))
    batch = {'image': jax.random.normal(jax.random.key(1), (4, 2, 2, 1)),
             'label': jnp.array([0, 1, 2, 1])}
    state, sums = steps.train_step(state, steps.zero_metrics(steps.TRAIN_METRICS), batch,
                                   jax.random.key(2), model=model, tx=tx, label_smoothing=0.0,
                                   aux_loss_weight=0.0)
    assert np.isfinite(float(sums['loss_sum']))  # The loss was computed before the update...
    assert not np.all(np.isfinite(state.params['head']['kernel']))  # ...which made weights inf,
    assert float(sums['nonfinite_steps']) == 1.0  # and the step says so.
