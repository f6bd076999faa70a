"""Recipe presets: the ResNet-RS ladder changes one switch per rung (tests/test_study_runs.py
trains it as a study)."""

import os

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
