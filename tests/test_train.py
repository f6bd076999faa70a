"""The trainer on digits: device-count invariance, resume, divergence, bad checkpoints."""

import json
import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxconv.data import pipeline
from jaxconv.models import registry
from jaxconv.models.layers import batch_norm
from jaxconv.train import loop
from jaxconv.train.checkpoint import NoReadableCheckpointError
from jaxconv.train.writer import read_metrics


class _TinyBNNet(nn.Module):
    """Conv-BN-ReLU-dropout-pool-dense: small, but with every kind of state the trainer carries."""

    num_classes: int = 10
    bn_group_size: int = 0
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(8, (3, 3), strides=(2, 2), dtype=self.dtype)(x)
        x = batch_norm(train, dtype=self.dtype, group_size=self.bn_group_size)()(x)
        x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x.mean(axis=(1, 2)))


@pytest.fixture
def tiny_config(digits_config, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, 'tiny_bn', _TinyBNNet)
    config = digits_config
    config.model.name = 'tiny_bn'
    config.train.steps = 30
    config.train.log_every = 1
    config.train.eval_every = 30
    config.train.checkpoint_every = 10
    config.optim.warmup_epochs = 0.2  # 4 steps.
    return config


def _train_losses(workdir):
    return {r['step']: r['loss'] for r in read_metrics(workdir) if r['split'] == 'train'}


def _final_params(workdir, step):
    restored = ocp.StandardCheckpointer().restore(
        os.path.join(workdir, 'checkpoints', str(step), 'state'))
    return restored['params'], restored['batch_stats']


@pytest.mark.parametrize('bn_group_size', [0, 16])
def test_eight_devices_and_one_device_give_the_same_losses(tiny_config, tmp_path, bn_group_size):
    """With groups of 16 BatchNorm statistics span two of the 8 devices' shards of 8."""
    assert jax.device_count() == 8
    tiny_config.train.steps = 20
    tiny_config.train.eval_every = 20
    tiny_config.model.kwargs.bn_group_size = bn_group_size
    # Mixing pairs examples across shards, so it is part of what must not depend on devices.
    tiny_config.train.mixup_alpha, tiny_config.train.cutmix_alpha = 0.2, 1.0
    eight = loop.train_and_evaluate(tiny_config, str(tmp_path / 'eight'))
    one = loop.train_and_evaluate(tiny_config, str(tmp_path / 'one'), devices=jax.devices()[:1])
    assert (eight['devices'], one['devices']) == (8, 1)
    losses_8, losses_1 = _train_losses(tmp_path / 'eight'), _train_losses(tmp_path / 'one')
    assert sorted(losses_8) == list(range(1, 21))
    np.testing.assert_allclose([losses_8[s] for s in range(1, 21)],
                               [losses_1[s] for s in range(1, 21)], atol=1e-4)
    assert eight['final_top1'] == pytest.approx(one['final_top1'], abs=1 / 359)


def _signal_on_batch(monkeypatch, batch_index: int, signum: int) -> None:
    """Delivers a real signal to this process when the trainer draws batch `batch_index`."""
    original = pipeline.train_batches

    def train_batches(*args, **kwargs):
        for index, batch in enumerate(original(*args, **kwargs)):
            if index == batch_index:
                os.kill(os.getpid(), signum)
            yield batch

    monkeypatch.setattr(pipeline, 'train_batches', train_batches)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_interrupted_and_resumed_run_follows_the_same_trajectory(tiny_config, tmp_path,
                                                                 monkeypatch, signum):
    """Every train record, the first after the resume included, equals the straight run's.

    The interruption at step 14 falls inside the log window 13..16, whose record must still
    average those four steps (the window's sums travel in the checkpoint).
    """
    tiny_config.train.log_every = 4
    straight = loop.train_and_evaluate(tiny_config, str(tmp_path / 'straight'))

    workdir = str(tmp_path / 'interrupted')
    with monkeypatch.context() as patch:
        _signal_on_batch(patch, batch_index=13, signum=signum)
        with pytest.raises(loop.TrainingInterrupted) as interrupted:
            loop.train_and_evaluate(tiny_config, workdir)
    assert interrupted.value.step == 14  # The step in flight finished, then it saved.
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '14']
    resumed = loop.train_and_evaluate(tiny_config, workdir)

    assert list(_train_losses(workdir)) == [4, 8, 12, 16, 20, 24, 28, 30]
    np.testing.assert_allclose(list(_train_losses(workdir).values()),
                               list(_train_losses(tmp_path / 'straight').values()), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(_final_params(workdir, 30)),
                    jax.tree.leaves(_final_params(tmp_path / 'straight', 30)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert resumed['final_top1'] == straight['final_top1']
    assert resumed['final_loss'] == pytest.approx(straight['final_loss'], rel=1e-5)


def test_outputs_of_a_run(tiny_config, tmp_path):
    workdir = tmp_path / 'run'
    tiny_config.train.log_every = 7  # Steps run ahead between fetches; 30 is logged as the end.
    summary = loop.train_and_evaluate(tiny_config, str(workdir))
    config = json.loads((workdir / 'config.json').read_text())
    assert config['model']['num_classes'] == 10 and config['train']['steps'] == 30
    assert config['train']['epochs'] == pytest.approx(30 * 64 / 1438)
    records = read_metrics(workdir)
    assert [r['step'] for r in records if r['split'] == 'train'] == [7, 14, 21, 28, 30]
    assert {r['split'] for r in records} == {'train', 'eval'}
    assert all({'loss', 'top1', 'top5', 'lr', 'img_per_sec'} <= set(r) for r in records
               if r['split'] == 'train')
    assert json.loads((workdir / 'summary.json').read_text()) == summary
    assert summary['params'] == 8 * 9 + 8 + 2 * 8 + 8 * 10 + 10
    assert summary['eval_preprocessing']['resolution'] == 32
    assert summary['config']['optim']['weight_decay'] == tiny_config.optim.weight_decay
    assert sorted(os.listdir(workdir / 'checkpoints')) == ['10', '20', '30']

    # Re-running a finished workdir trains nothing more and reports the same result.
    again = loop.train_and_evaluate(tiny_config, str(workdir))
    assert again['final_top1'] == summary['final_top1'] and again['steps'] == 30
    assert len(_train_losses(workdir)) == 5

    # A changed config, once allowed, is recorded, and the earlier one kept beside it.
    tiny_config.train.steps = 35
    loop.train_and_evaluate(tiny_config, str(workdir), allow_config_change=True)
    assert json.loads((workdir / 'config.json').read_text())['train']['steps'] == 35
    assert json.loads((workdir / 'config.until_step_30.json').read_text())['train']['steps'] == 30


def test_divergence_stops_without_overwriting_good_checkpoints(tiny_config, tmp_path):
    workdir = str(tmp_path / 'run')
    tiny_config.train.steps = 10
    loop.train_and_evaluate(tiny_config, workdir)
    good_params, _ = _final_params(workdir, 10)
    metrics_before = open(os.path.join(workdir, 'metrics.jsonl')).read()

    tiny_config.train.steps, tiny_config.train.checkpoint_every = 30, 5
    tiny_config.optim.base_lr, tiny_config.train.log_every = 1e30, 10
    with pytest.raises(loop.NonFiniteLossError, match=r'NaN/inf between steps 10 and 15; stopped '
                       r'without saving \(newest checkpoint: step 10\)'):
        loop.train_and_evaluate(tiny_config, workdir, allow_config_change=True)
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10']
    for a, b in zip(jax.tree.leaves(_final_params(workdir, 10)[0]), jax.tree.leaves(good_params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert open(os.path.join(workdir, 'metrics.jsonl')).read().startswith(metrics_before)


def _corrupt(step_dir):
    for root, _, files in os.walk(step_dir):
        for name in files:
            with open(os.path.join(root, name), 'wb') as f:
                f.write(b'not a checkpoint')


def test_unreadable_checkpoints_are_set_aside_not_deleted(tiny_config, tmp_path):
    workdir = tmp_path / 'run'
    tiny_config.train.steps = 20
    loop.train_and_evaluate(tiny_config, str(workdir))
    _corrupt(workdir / 'checkpoints' / '20')

    tiny_config.train.steps = 30  # Resumes from 10, the newest readable, and finishes.
    summary = loop.train_and_evaluate(tiny_config, str(workdir), allow_config_change=True)
    assert summary['steps'] == 30
    assert (workdir / 'checkpoints_unreadable' / '20').is_dir()
    assert sorted(os.listdir(workdir / 'checkpoints')) == ['10', '20', '30']

    for step in ('10', '20', '30'):
        _corrupt(workdir / 'checkpoints' / step)
    metrics_before = (workdir / 'metrics.jsonl').read_text()
    with pytest.raises(NoReadableCheckpointError, match='use a new --workdir to start over'):
        loop.train_and_evaluate(tiny_config, str(workdir))
    kept = sorted(os.listdir(workdir / 'checkpoints_unreadable'))
    assert kept == ['10', '20', '20.1', '30']
    assert (workdir / 'metrics.jsonl').read_text() == metrics_before


def test_batch_must_divide_over_devices(tiny_config, tmp_path):
    tiny_config.train.batch_size = 60
    with pytest.raises(ValueError, match='train.batch_size=60 must be a multiple of the 8 devices'):
        loop.train_and_evaluate(tiny_config, str(tmp_path))


def test_steps_are_derived_from_epochs_and_epochs_from_steps(digits_config):
    meta = pipeline.DatasetMeta(num_classes=10, num_train_examples=1438, num_eval_examples=359,
                                channels=1)
    resolved = loop.resolve_config(digits_config, meta, num_devices=8)
    assert resolved.train.steps == 675 == -(-30 * 1438 // 64)  # ceil(30 epochs x 1438 / 64).
    assert resolved.model.num_classes == 10 and resolved.train.eval_batch_size == 64
    assert digits_config.train.steps is None  # The caller's config is not modified.
    digits_config.train.steps = 100
    assert loop.resolve_config(digits_config, meta, 8).train.epochs == pytest.approx(6400 / 1438)


def test_bfloat16_compute_keeps_float32_params(tiny_config, tmp_path):
    tiny_config.model.compute_dtype = 'bfloat16'
    tiny_config.train.steps = 10
    summary = loop.train_and_evaluate(tiny_config, str(tmp_path))
    assert np.isfinite(summary['final_loss'])
    params, _ = _final_params(tmp_path, 10)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype('float32')}
    tiny_config.model.compute_dtype = 'float16'
    with pytest.raises(ValueError, match="unknown model.compute_dtype 'float16'; valid: float32"):
        loop.train_and_evaluate(tiny_config, str(tmp_path / 'other'))


def test_ema_weights_are_evaluated_beside_the_raw_ones(tiny_config, tmp_path):
    tiny_config.train.steps, tiny_config.train.eval_every = 10, 5
    tiny_config.train.ema_decay = 0.9
    summary = loop.train_and_evaluate(tiny_config, str(tmp_path))
    evals = [r for r in read_metrics(tmp_path) if r['split'] == 'eval']
    assert [r['step'] for r in evals] == [5, 10]
    assert all({'top1', 'ema_top1', 'ema_top5', 'ema_loss'} <= set(r) for r in evals)
    assert {'final_ema_top1', 'best_ema_top1', 'best_ema_step'} <= set(summary)
    assert evals[-1]['ema_loss'] != evals[-1]['loss']


def test_a_run_saved_on_eight_devices_resumes_on_one(tiny_config, tmp_path, monkeypatch):
    """Checkpoints hold global arrays, so a run can move to a machine with fewer devices."""
    tiny_config.train.steps = 20
    straight = loop.train_and_evaluate(tiny_config, str(tmp_path / 'straight'))
    workdir = str(tmp_path / 'moved')
    with monkeypatch.context() as patch:
        _signal_on_batch(patch, batch_index=7, signum=signal.SIGTERM)
        with pytest.raises(loop.TrainingInterrupted):
            loop.train_and_evaluate(tiny_config, workdir)
    moved = loop.train_and_evaluate(tiny_config, workdir, devices=jax.devices()[:1])
    assert moved['devices'] == 1
    np.testing.assert_allclose(list(_train_losses(workdir).values()),
                               list(_train_losses(tmp_path / 'straight').values()), atol=1e-4)
    assert moved['final_top1'] == pytest.approx(straight['final_top1'], abs=1 / 359)
