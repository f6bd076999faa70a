"""Linear probe on a network's features (jaxconv.linear_probe)."""

import csv
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxconv import digits_transfer, linear_probe, models, study


def test_probe_separates_digits_on_random_features_and_not_on_shuffled_labels():
    """Random LeNet-5 features of the digits are close to linearly separable (a random-feature
    model: well above 90%), while the same probe on permuted train labels stays near chance
    (0.1): the probe measures the features, not memorisation of the test set."""
    data = digits_transfer.load_digits_split()
    model = models.create_model('lenet5', num_classes=10)
    variables = model.init(jax.random.key(0), data['test'][0][:1], train=False)
    train_x = linear_probe.extract(model, variables, data['train'][0])
    test_x = linear_probe.extract(model, variables, data['test'][0])
    assert train_x.shape == (len(data['train'][1]), 84)  # F6's outputs: the classifier's input.
    result = linear_probe.probe(train_x, data['train'][1], test_x, data['test'][1])
    assert result['test_top1'] > 0.9, result
    shuffled = np.random.default_rng(0).permutation(data['train'][1])
    assert linear_probe.probe(train_x, shuffled, test_x, data['test'][1])['test_top1'] < 0.25


# ---- The probe as a study run (experiments/linear_probe.py) ------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE_STUDY = 'experiments/linear_probe.py'


def test_probe_runs_wait_for_their_network_then_plan_the_probe_command(tmp_path):
    from jaxconv import config_files
    from jaxconv.study import launch, records

    module = config_files.load_module(os.path.join(REPO, PROBE_STUDY))
    results = study.Results(str(tmp_path))
    first = module.get_study('smoke,layers=c3/pooled', results)
    assert [run.name for run in first.runs] == ['trained', 'random_init'] and first.waiting
    for name in ('trained', 'random_init'):
        os.makedirs(tmp_path / name)
        records.write_json(str(tmp_path / name / 'summary.json'), {'final_top1': 0.9})
    then = module.get_study('smoke,layers=c3/pooled', results)
    probes = [run for run in then.runs if run.probe_of is not None]
    assert [run.name for run in probes] == ['trained,layer=c3', 'trained,layer=pooled',
                                            'random_init,layer=c3', 'random_init,layer=pooled']
    assert not then.waiting
    planned = launch.plan(probes[:1], str(tmp_path), 'g', ['--config.train.steps=5'])
    command = planned[0].task.command
    # The probe's own CLI on the trained run's workdir: no trainer flags, no W&B run.
    assert command[1:] == ['-m', 'jaxconv.linear_probe', f'--workdir={tmp_path}/trained',
                           '--layer=c3', '--C=1.0', f'--out={tmp_path}/trained,layer=c3']
    with pytest.raises(ValueError, match='linear probe'):
        probes[0].config_dict()
    with pytest.raises(ValueError, match='of=DIR'):
        module.get_study('of', results)


@pytest.mark.parametrize('flags, expected', [
    (['--workdir={missing}'], 'config.json'),
    (['--workdir={missing}', '--C=0'], '--C must be a positive number'),
])
def test_probe_cli_bad_input_is_one_line_and_writes_nothing(flags, expected, tmp_path, capsys):
    missing = str(tmp_path / 'no_run')
    out = tmp_path / 'out'
    code = linear_probe.main([flag.format(missing=missing) for flag in flags] + [f'--out={out}'])
    error = capsys.readouterr().err.strip()
    assert code == 1 and len(error.splitlines()) == 1, error
    assert error.startswith('jaxconv.linear_probe: error:') and expected in error, error
    assert not out.exists() and not os.path.exists(missing)


def test_probe_study_end_to_end_matches_a_logistic_regression_fitted_here(tmp_path, digits_dir):
    """A trained LeNet-5 and two of its layers probed through the study CLI. Each probe's top-1
    equals a scikit-learn logistic regression fitted in this test on the same layer's features
    (computed here by jaxconv.models.features, without the probe's code path)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from jaxconv.inspect.run import load_run
    from jaxconv.models.features import features

    workdir = tmp_path / 'probes'
    environ = {k: v for k, v in os.environ.items()
               if k not in ('XLA_FLAGS', 'WANDB_API_KEY', 'JAX_COMPILATION_CACHE_DIR')}
    environ['HOME'] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, '-m', 'jaxconv.study', 'run',
         f'{PROBE_STUDY}:smoke,epochs=3,layers=c3/pooled,random_init=false',
         f'--workdir={workdir}', '--', f'--config.dataset.data_dir={digits_dir}',
         '--config.wandb.mode=disabled'],
        cwd=REPO, env=environ, text=True, capture_output=True, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    with open(workdir / 'table.csv') as f:
        rows = {row['run']: row for row in csv.DictReader(f)}
    assert list(rows) == ['trained', 'trained,layer=c3', 'trained,layer=pooled']
    assert all(row['status'] == 'done' for row in rows.values())

    run = load_run(str(workdir / 'trained'))
    sets = [linear_probe.split_images(run, split)
            for split in (run.config.dataset.train_split, run.config.dataset.eval_split)]
    for layer in ('c3', 'pooled'):
        (train_x, train_y), (test_x, test_y) = [
            (np.asarray(features(run.model, run.variables, x, layer)).reshape(len(x), -1), y)
            for x, y in sets]
        scaler = StandardScaler().fit(train_x)
        head = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(train_x), train_y)
        expected = 100 * head.score(scaler.transform(test_x), test_y)
        # Features batched differently may differ in the last bit: at most one example apart.
        one_example = 100 / len(test_y)
        assert float(rows[f'trained,layer={layer}']['top1']) == pytest.approx(expected,
                                                                              abs=one_example)
    assert float(rows['trained,layer=pooled']['top1']) > 90  # Trained features separate digits.
    with open(workdir / 'trained,layer=c3' / 'summary.json') as f:
        assert json.load(f)['probe_of'] == str(workdir / 'trained')
    image = np.asarray(Image.open(workdir / 'probes.png').convert('RGB'))
    assert image.shape[:2] == (450, 900)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # Not blank.
