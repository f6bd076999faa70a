"""Recipe presets: the ResNet-RS ladder changes one switch per rung (tests/test_study_runs.py
trains it as a study)."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import pytest

from configs import efficientnet, resnet_rs
from jaxconv import config_files, models, recipes
from jaxconv.models.layers import drop_path_rates

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LADDER = os.path.join(REPO, 'configs', 'resnet_rs.py')
EFFICIENTNET = os.path.join(REPO, 'configs', 'efficientnet.py')
RS_VARIANTS = tuple(f'rs{depth}' for depth in resnet_rs.RS_MAGNITUDE)


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
    assert config.model.kwargs.stem_pool == 'max'  # ResNet-200 as He et al. 2016.
    final = config_files.load(f'{LADDER}:+resnet_d')
    assert (final.model.name, final.model.kwargs.se_ratio, final.train.ema_decay) == (
        'resnet200d', 0.25, 0.9999)
    assert final.model.kwargs.stem_pool == 'conv'


def _model(config):
    return models.create_model(config.model.name, **config.model.kwargs)


def test_last_rung_is_exactly_resnet_rs200():
    """Table 1's last row (83.4) is ResNet-RS-200 at 256 (tensorflow/tpu resnet_rs/README.md).

    Same module fields, hence the same parameter tree, as resnet_rs200 (variant name and the
    image-size hint aside: neither builds anything), and timm resnetrs200's parameter count
    (93,209,992; ../shared/reference/params.md). ResNet-200's dropout 0.25 and stochastic depth 0.1
    are RS-200's own, so nothing needs matching by hand at this depth.
    """
    final = config_files.load(f'{LADDER}:+resnet_d')
    published = config_files.load(f'{LADDER}:rs200')
    rung_model, rs_model = _model(final), _model(published)

    def fields(model):
        return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
                if f.name not in ('variant', 'default_image_size', 'parent', 'name')}

    assert fields(rung_model) == fields(rs_model)
    assert (rung_model.stem, rung_model.stem_pool, rung_model.shortcut) == ('deep', 'conv',
                                                                             'avg_down')
    variables = jax.eval_shape(lambda: rung_model.init(jax.random.key(0),
                                                       jnp.zeros((1, 64, 64, 3))))
    assert sum(leaf.size for leaf in jax.tree.leaves(variables['params'])) == 93_209_992
    # The recipe is the same too: the two configs differ only in how they name the model.
    assert {key.split('.')[0] for key in recipes.diff(f'{LADDER}:+resnet_d',
                                                       f'{LADDER}:rs200')} == {'model'}


@pytest.mark.parametrize('spec', list(resnet_rs.RUNGS) + list(RS_VARIANTS))
def test_resnet_rs_presets_follow_the_tf1_trainer(spec):
    """tensorflow/tpu resnet_main.py at the ResNet-RS release (3709ce3), `resnet_model_fn`:

    - `MomentumOptimizer(momentum=0.9, use_nesterov=True)`;
    - `l2_loss` on every trainable variable without 'batch_normalization' in its name;
    - `if moving_average_decay > 0 and bn_momentum > 0: raise ValueError` (and every RS config has
      `bn_momentum: 0`), while the ladder keeps TF's default BN momentum 0.9 before +ema;
    - BatchNorm per TPU core: 4096 images over 32 cores (resnet/configs/cloud/v3-32.yaml).
    """
    config = config_files.load(f'{LADDER}:{spec}')
    assert (config.optim.name, config.optim.momentum, config.optim.nesterov) == ('sgd', 0.9, True)
    assert (config.optim.weight_decay_mask, config.optim.weight_decay_mode) == ('non_norm', 'l2')
    model = _model(config)
    assert model.bn_momentum == (0.0 if config.train.ema_decay > 0 else 0.9)
    assert config.train.ema_decay > 0 or spec in resnet_rs.RUNGS[:3]
    assert model.bn_group_size == 4096 // 32 and config.train.batch_size == 4096


@pytest.mark.parametrize('spec, fraction', [('baseline', 256 / 288), ('+resnet_d', 256 / 288),
                                            ('rs50', 0.833), ('rs200', 0.889), ('rs420', 0.909)])
def test_resnet_rs_eval_crop_is_size_over_size_plus_32(spec, fraction):
    """resnet_preprocessing.py at the release: CROP_PADDING = 32 (0.833 at 160, 0.909 at 320)."""
    config = config_files.load(f'{LADDER}:{spec}')
    assert config.dataset.eval_crop_fraction == pytest.approx(fraction, abs=5e-4)
    assert config.dataset.eval_crop_fraction == pytest.approx(
        config.dataset.image_size / (config.dataset.image_size + 32))


def _tf_efficientnet_bn_group(batch: int, cores: int) -> int:
    """Images per BatchNorm group in TF EfficientNet (utils.py `TpuBatchNormalization._moments`)."""
    cores_per_group = 1 if cores <= 8 else max(8, cores // 8)
    return batch // cores * cores_per_group


def test_bn_groups_are_the_references_per_replica_batches():
    for variant in RS_VARIANTS:
        assert _model(config_files.load(f'{LADDER}:{variant}')).bn_group_size == 128
    efficientnet_group = _model(config_files.load(f'{EFFICIENTNET}:b0')).bn_group_size
    # Batch 2048 on 8 cores (the Cloud TPU tutorial's v3-8) or on 64 to 1024 cores.
    for cores in (8, 64, 128, 256, 512, 1024):
        assert efficientnet_group == _tf_efficientnet_bn_group(2048, cores) == 256
    # A small-image run normalises over its whole batch of 128.
    for spec in (f'{LADDER}:rs50,dataset=cifar10', f'{EFFICIENTNET}:b0,dataset=digits'):
        config = config_files.load(spec)
        assert _model(config).bn_group_size == 0 and config.train.batch_size == 128


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


# tensorflow/tpu efficientnet/README.md, the AutoAugment and RandAugment rows (top-1 %).
README_AUTOAUGMENT_TOP1 = {0: 77.1, 1: 79.1, 2: 80.1, 3: 81.6, 4: 82.9, 5: 83.6, 6: 84.0, 7: 84.3}
README_RANDAUGMENT = {5: (17.0, 83.7), 7: (28.0, 84.7)}  # --randaug_magnitude, top-1.


@pytest.mark.parametrize('variant, size', [(0, 224), (4, 380), (5, 456), (6, 528), (7, 600)])
def test_efficientnet_presets(variant, size):
    config = config_files.load(f'{EFFICIENTNET}:b{variant}')
    assert config.model.name == f'efficientnet_b{variant}'
    assert config.dataset.image_size == size
    assert config.dataset.eval_crop_fraction == pytest.approx(size / (size + 32))
    assert (config.optim.name, config.optim.rmsprop_eps, config.optim.schedule) == (
        'rmsprop_tf', 1e-3, 'exponential')
    assert (config.train.ema_decay, config.train.label_smoothing) == (0.9999, 0.1)
    assert config.optim.weight_decay_mask == 'non_norm'  # efficientnet/main.py `model_fn`.
    # The augmentation of the README row whose top-1 the preset targets.
    if variant in README_RANDAUGMENT:
        magnitude, top1 = README_RANDAUGMENT[variant]
        assert (config.dataset.randaugment_layers, config.dataset.randaugment_magnitude) == (
            2, magnitude)
        assert config.dataset.autoaugment == ''
    else:
        top1 = README_AUTOAUGMENT_TOP1[variant]
        assert config.dataset.autoaugment == 'v0' and config.dataset.randaugment_layers == 0
    assert efficientnet.PUBLISHED_TOP1[variant] == top1
    small = config_files.load(f'{EFFICIENTNET}:b{variant},dataset=cifar10')
    assert (small.dataset.name, small.dataset.image_size) == ('cifar10', 32)


def test_efficientnet_stochastic_depth_is_tfs_rate_i_over_n():
    """efficientnet_model.py `Model.call`: survival_prob = 1 - drop_rate * idx / len(blocks).

    B0 has 16 blocks (Tan & Le 2019 Table 1 repeats 1, 2, 2, 3, 3, 4, 1) and drop rate 0.2: block
    i drops with 0.2 i / 16, the last with 0.1875, not timm's 0.2.
    """
    config = config_files.load(f'{EFFICIENTNET}:b0')
    model = _model(config)
    assert (model.drop_path_rate, model.drop_path_rule) == (0.2, 'tf_block')
    rates = sum(drop_path_rates((1, 2, 2, 3, 3, 4, 1), model.drop_path_rate,
                                model.drop_path_rule), [])
    tf_rates = [1 - (1.0 - 0.2 * idx / 16) for idx in range(16)]
    assert rates == pytest.approx(tf_rates)
    assert rates[-1] == pytest.approx(0.1875)
