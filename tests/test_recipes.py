"""Recipe presets: the ResNet-RS ladder changes one switch per rung, and runs through the CLI."""

import json
import os
import subprocess
import sys

import pytest

from configs import resnet_rs
from jaxconv import config_files, recipes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LADDER = os.path.join(REPO, 'configs', 'resnet_rs.py')


def test_each_rung_differs_from_the_previous_in_exactly_its_switch():
    specs = recipes.ladder_specs(f'{LADDER}:depth=50')
    assert len(specs) == len(resnet_rs.RUNGS) == 11
    for previous, current, rung in zip(specs[:-1], specs[1:], resnet_rs.RUNGS[1:], strict=True):
        changed = recipes.diff(previous, current)
        expected = {key: value.format(depth=50) if isinstance(value, str) else value
                    for key, value in resnet_rs.SWITCHES[rung].items()}
        assert {key: new for key, (_, new) in changed.items()} == expected, rung


def test_baseline_is_the_published_baseline():
    config = config_files.load(f'{LADDER}:baseline')
    assert config.model.name == 'resnet200' and config.dataset.image_size == 256
    assert (config.train.epochs, config.optim.schedule, config.optim.weight_decay) == (
        90, 'step', 1e-4)
    assert config.optim.step_boundaries == (30 / 90, 60 / 90, 80 / 90)
    final = config_files.load(f'{LADDER}:+resnet_d')
    assert (final.model.name, final.model.kwargs.se_ratio, final.train.ema_decay) == (
        'resnet200d', 0.25, 0.9999)


@pytest.mark.parametrize('depth, size, magnitude', [(50, 160, 10.0), (200, 256, 15.0),
                                                     (420, 320, 15.0)])
def test_published_variants(depth, size, magnitude):
    config = config_files.load(f'{LADDER}:rs{depth}')
    assert config.model.name == f'resnet_rs{depth}'
    assert (config.dataset.image_size, config.dataset.randaugment_magnitude) == (size, magnitude)
    assert (config.optim.weight_decay, config.train.label_smoothing) == (4e-5, 0.1)


def test_bad_arguments_name_the_valid_ones():
    with pytest.raises(ValueError, match="unknown rung '\\+cosin'; valid: baseline, \\+cosine"):
        config_files.load(f'{LADDER}:rung=+cosin')
    with pytest.raises(ValueError, match='unknown ResNet-RS variant rs60; valid: rs50, rs101'):
        config_files.load(f'{LADDER}:rs60')
    with pytest.raises(ValueError, match="unknown config argument 'width'; valid: depth, rung"):
        config_files.load(f'{LADDER}:width=2')


def test_diff_command_prints_the_differing_keys(capsys):
    assert recipes.main(['diff', f'{LADDER}:+ema', f'{LADDER}:+label_smoothing']) == 0
    assert capsys.readouterr().out == 'train.label_smoothing: 0.0 -> 0.1\n'
    assert recipes.main(['diff', f'{LADDER}:nope=1', f'{LADDER}']) == 2


def test_whole_ladder_runs_rung_by_rung_through_the_cli(tmp_path, digits_dir):
    """ResNet-18 on digits, 9 steps a rung: every rung writes a summary and a table row.

    Halved in depth and quartered in width (one block of 16-128 channels per stage) to keep the
    eleven rungs' compiles short.
    """
    environ = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'experiments', 'ladder.py'),
         f'--config={LADDER}:depth=18,dataset=digits', f'--workdir={tmp_path}', '--',
         '--config.train.steps=9', '--config.train.batch_size=16',
         '--config.optim.warmup_epochs=0', '--config.train.eval_batch_size=64',
         '--config.dataset.eval_split=test[:64]', f'--config.dataset.data_dir={digits_dir}',
         '--config.wandb.mode=disabled', '--config.model.kwargs.depth_multiplier=0.5',
         '--config.model.kwargs.width_multiplier=0.25'],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / 'ladder.json').read_text())
    assert [row['rung'] for row in rows] == list(resnet_rs.RUNGS)
    for row in rows:
        summary = json.loads((tmp_path / row['rung'] / 'summary.json').read_text())
        assert summary['steps'] == 9 and row['top1'] == pytest.approx(100 * summary['final_top1'])
    assert rows[3]['ema_top1'] is not None and rows[0]['ema_top1'] is None  # From +ema on.
    assert rows[-1]['switch'] == "model.name='resnet18d'"
    assert rows[-1]['published_top1'] == 83.4
    assert (tmp_path / 'ladder.md').read_text().startswith('| rung | switch | top-1 |')


@pytest.mark.parametrize('variant, size, magnitude', [(0, 224, None), (5, 456, 17.0),
                                                      (7, 600, 28.0)])
def test_efficientnet_presets(variant, size, magnitude):
    config = config_files.load(os.path.join(REPO, 'configs', f'efficientnet.py:b{variant}'))
    assert config.model.name == f'efficientnet_b{variant}'
    assert config.dataset.image_size == size
    assert config.dataset.eval_crop_fraction == pytest.approx(size / (size + 32))
    assert (config.optim.name, config.optim.rmsprop_eps, config.optim.schedule) == (
        'rmsprop_tf', 1e-3, 'exponential')
    assert (config.train.ema_decay, config.train.label_smoothing) == (0.9999, 0.1)
    assert config.dataset.randaugment_layers == (2 if magnitude else 0)
    if magnitude:
        assert config.dataset.randaugment_magnitude == magnitude
    small = config_files.load(os.path.join(REPO, 'configs', f'efficientnet.py:b{variant},'
                                                            'dataset=cifar10'))
    assert (small.dataset.name, small.dataset.image_size) == ('cifar10', 32)
