"""Transfer learning: the converter's CLI, init_from, freezing and frozen BatchNorm statistics."""

import json
import os
import pickle

import numpy as np
import pytest

from jaxconv.convert.__main__ import main as convert_main
from jaxconv.torch_support import import_torch
from jaxconv.train import finetune, loop, recipe
from jaxconv.train.writer import read_metrics


class _Payload:
    """An object of a class that unpickling would have to import and construct."""


@pytest.fixture(scope='module')
def resnet18_file(tmp_path_factory):
    """torchvision's ResNet-18 (random weights, 1000 classes) saved as torch.save writes it."""
    torch, torchvision, _ = import_torch()
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp('torch') / 'resnet18.pth')
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope='module')
def converted_resnet18(resnet18_file, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('converted') / 'resnet18')
    assert convert_main(['--from', 'torchvision:resnet18', '--checkpoint', resnet18_file,
                         '--out', out]) == 0
    return out


@pytest.fixture(scope='module')
def shufflenet_file(tmp_path_factory):
    """torchvision's ShuffleNetV2 x0.5 (random weights) with BatchNorm statistics of its own
    activations (a cumulative train-mode pass), as a pretrained network has: the frozen backbone
    then yields features of sensible size. Returns (file, its state_dict as numpy)."""
    torch, torchvision, _ = import_torch()
    torch.manual_seed(0)
    module = torchvision.models.shufflenet_v2_x0_5(weights=None)
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = None  # Cumulative average: the statistics of this one batch.
    with torch.no_grad():
        module.train()(torch.rand(64, 3, 32, 32) * 2 - 1)
    path = str(tmp_path_factory.mktemp('torch') / 'shufflenet.pth')
    torch.save(module.state_dict(), path)
    return path, {key: value.numpy() for key, value in module.state_dict().items()}


def test_cli_writes_convert_json_with_torchvision_preprocessing(converted_resnet18):
    with open(os.path.join(converted_resnet18, 'convert.json')) as f:
        info = json.load(f)
    assert (info['model'], info['num_classes'], info['source']) == (
        'resnet18', 1000, 'torchvision:resnet18')
    # torchvision's ResNet-18 weights: resize 256, crop 224, bilinear, ImageNet mean/std.
    pre = info['eval_preprocessing']
    assert pre['resolution'] == 224 and pre['crop_fraction'] == pytest.approx(224 / 256)
    assert pre['interpolation'] == 'bilinear'
    np.testing.assert_allclose(pre['mean'], [0.485 * 255, 0.456 * 255, 0.406 * 255])


@pytest.mark.parametrize('case', ['unknown_library', 'unknown_model', 'missing_file',
                                  'pickled_object', 'wrong_model', 'out_not_empty'])
def test_cli_bad_input_is_one_line_and_exit_1(case, resnet18_file, converted_resnet18, tmp_path,
                                              capsys):
    path = resnet18_file
    args = {'from': 'torchvision:resnet18', 'checkpoint': path, 'out': str(tmp_path / 'out')}
    expected = {'unknown_library': 'must be LIBRARY:NAME', 'unknown_model': 'no jaxconv layout',
                'missing_file': 'is not a file', 'pickled_object': 'weights_only=True',
                'wrong_model': 'does not match torchvision:resnet34',
                'out_not_empty': 'is not empty'}[case]
    if case == 'unknown_library':
        args['from'] = 'caffe:resnet18'
    elif case == 'unknown_model':
        args['from'] = 'torchvision:resnet19'
    elif case == 'missing_file':
        args['checkpoint'] = str(tmp_path / 'absent.pth')
    elif case == 'pickled_object':  # An arbitrary pickled object is refused, never run.
        args['checkpoint'] = str(tmp_path / 'evil.pth')
        with open(args['checkpoint'], 'wb') as f:
            pickle.dump({'fc.weight': _Payload()}, f)
    elif case == 'wrong_model':
        args['from'] = 'torchvision:resnet34'
    elif case == 'out_not_empty':
        args['out'] = converted_resnet18
    listing = sorted(os.listdir(converted_resnet18))
    assert convert_main([f'--{key}={value}' for key, value in args.items()]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and expected in err.splitlines()[0], err
    if case == 'wrong_model':  # The table names the keys ResNet-34 has and the file lacks.
        assert 'layer1_2/conv1/kernel' in err and 'missing' in err
    assert sorted(os.listdir(converted_resnet18)) == listing  # Nothing written is lost.


def _finetune_config(digits_config, init_from, **train):
    config = digits_config
    config.model.name = 'shufflenet_v2_x0_5'
    config.model.kwargs.bn_frozen = True
    config.dataset.channels = 3  # Grayscale digits as RGB, the ImageNet model's input.
    config.train.batch_size = 64
    config.train.steps = 8
    config.train.log_every = 2
    config.train.eval_every = 8
    config.train.checkpoint_every = 4
    config.train.init_from = init_from
    # 1024 features of unit size: Adam at a small step size suits a fresh linear head.
    config.optim.name = 'adamw'
    config.optim.warmup_epochs = 0
    config.optim.schedule = 'constant'
    config.optim.base_lr = 0.002  # Peak 5e-4 at batch 64.
    config.train.update(train)
    return config


def test_frozen_backbone_stays_bit_identical_and_the_head_learns(digits_config, shufflenet_file,
                                                                 tmp_path):
    """ShuffleNetV2 from a torchvision file, backbone and BN statistics frozen, new 10-class
    head trained on digits: every backbone weight and statistic is bit-identical to the
    converted one after training (and the stem to the torchvision tensor); the head moved and
    the loss fell."""
    import jax
    import orbax.checkpoint as ocp

    from jaxconv.convert.core import flatten

    converted = str(tmp_path / 'converted')
    assert convert_main(['--from', 'torchvision:shufflenet_v2_x0_5', '--checkpoint',
                         shufflenet_file[0], '--out', converted]) == 0
    before = flatten(ocp.PyTreeCheckpointer().restore(os.path.join(converted, 'checkpoint')))
    config = _finetune_config(digits_config, converted, freeze='backbone')
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    state = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', '8',
                                                            'state'))
    after = flatten({'params': state['params'], 'batch_stats': state['batch_stats']})
    head = {'params/fc/kernel', 'params/fc/bias'}
    assert set(after) == set(before) and len(after) > 100
    for key in sorted(set(after) - head):
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    torch_state = shufflenet_file[1]
    np.testing.assert_array_equal(after['params/conv1/conv/kernel'],
                                  torch_state['conv1.0.weight'].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(after['batch_stats/conv1/bn/var'],
                                  torch_state['conv1.1.running_var'])
    assert before['params/fc/kernel'].shape == (1024, 1000)
    assert after['params/fc/kernel'].shape == (1024, 10)
    halfway = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', '4',
                                                              'state'))['params']['fc']
    assert np.abs(halfway['kernel'] - state['params']['fc']['kernel']).max() > 0  # It trains.
    losses = [r['loss'] for r in read_metrics(workdir) if r['split'] == 'train']
    assert losses[-1] < losses[0], losses


def test_init_from_a_run_with_other_classes_and_an_incompatible_model(digits_config, tmp_path,
                                                                      caplog):
    """LeNet-5 trained on 10 digit classes starts a 12-class LeNet-5 (all but the new head
    loaded); a ResNet-20 cannot start from it and stops with one line naming a leaf."""
    import jax
    import orbax.checkpoint as ocp

    config = digits_config
    config.train.steps = 3
    config.train.log_every = 3
    config.optim.warmup_epochs = 0
    source = str(tmp_path / 'source')
    loop.train_and_evaluate(config, source, devices=jax.devices()[:1])
    trained = ocp.StandardCheckpointer().restore(os.path.join(source, 'checkpoints', '3',
                                                              'state'))['params']

    config.train.init_from = source
    config.train.steps = 1
    config.model.num_classes = 12
    target = str(tmp_path / 'target')
    with caplog.at_level('WARNING'):
        loop.train_and_evaluate(config, target, devices=jax.devices()[:1])
    assert any('freshly initialised: params/output/bias, params/output/kernel' in r.message
               for r in caplog.records)
    config.train.freeze = 'c1/.*|c3/.*|c5/.*|f6/.*'  # Only to check the loaded values below.
    config.train.steps = 2
    frozen = str(tmp_path / 'frozen')
    loop.train_and_evaluate(config, frozen, devices=jax.devices()[:1])
    after = ocp.StandardCheckpointer().restore(os.path.join(frozen, 'checkpoints', '2',
                                                            'state'))['params']
    for name in ('c1', 'c3', 'c5', 'f6'):
        np.testing.assert_array_equal(after[name]['kernel'], trained[name]['kernel'])
    assert after['output']['kernel'].shape == (84, 12)

    config.model.name = 'resnet20'
    config.train.freeze = ''
    with pytest.raises(finetune.InitFromError) as error:
        loop.train_and_evaluate(config, str(tmp_path / 'incompatible'))
    message = str(error.value)
    assert '\n' not in message and 'holds lenet5, which does not fit resnet20' in message


@pytest.mark.parametrize('key,value,expected', [
    ('train.freeze', 'layer[', 'is not a regex'),
    ('train.init_from', '/nonexistent/run', 'neither a converted checkpoint'),
    ('optim.lr_multipliers', (('backbone', -1.0),), 'must be (regex, multiplier >= 0)'),
])
def test_finetune_keys_are_validated_in_one_line(digits_config, key, value, expected):
    section, name = key.split('.')
    digits_config[section][name] = value
    with pytest.raises(recipe.ConfigError) as error:
        recipe.validate_config(digits_config)
    assert expected in str(error.value) and '\n' not in str(error.value)


def test_backbone_and_head_groups_resolve_to_regexes():
    """'backbone' matches every parameter outside the head, 'head' only the head."""
    import re

    head = {'fc/kernel', 'fc/bias'}
    backbone, head_pattern = (finetune.group_pattern(word, head) for word in ('backbone', 'head'))
    names = ['conv1/kernel', 'layer1_0/bn1/scale', 'fc/kernel', 'fc/bias', 'fc2/kernel']
    assert [n for n in names if re.fullmatch(backbone, n)] == [
        'conv1/kernel', 'layer1_0/bn1/scale', 'fc2/kernel']
    assert [n for n in names if re.fullmatch(head_pattern, n)] == ['fc/kernel', 'fc/bias']


def test_finetune_study_stages_phase2_on_phase1(tmp_path):
    """experiments/finetune.py: phase 1 from the given weights with the backbone frozen, then,
    once phase 1 has finished, phase 2 from phase 1's workdir with everything trainable at a
    tenth of the LR."""
    from jaxconv import config_files, study

    class Finished(study.Results):
        def __init__(self, workdir, finished):
            super().__init__(workdir)
            self.finished = finished

        def done(self, names):
            return all(name in self.finished for name in names)

    module = config_files.load_module('experiments/finetune.py')
    first = module.get_study('init_from=runs/r18', Finished(str(tmp_path), set()))
    assert [run.name for run in first.runs] == ['phase1'] and first.waiting
    then = module.get_study('init_from=runs/r18', Finished(str(tmp_path), {'phase1'}))
    phase1, phase2 = (run.config_dict() for run in then.runs)
    assert (phase1.train.init_from, phase1.train.freeze) == ('runs/r18', 'backbone')
    assert phase2.train.init_from == str(tmp_path / 'phase1') and phase2.train.freeze == ''
    assert phase2.optim.base_lr == pytest.approx(phase1.optim.base_lr / 10)
    assert phase1.model.kwargs.bn_frozen and phase2.model.kwargs.bn_frozen
    with pytest.raises(ValueError, match='takes init_from=DIR'):
        module.get_study('', Finished(str(tmp_path), set()))
