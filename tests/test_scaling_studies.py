"""The scaling and search studies (experiments/efficientnet_compound.py, resnet_rs_scaling.py,
hparam_search.py) and their helpers (jaxconv/study/search.py).

The first half is pure Python: random-search distributions, coarse-to-fine narrowing, the compound
constraint over the candidate list, and the staged studies driven by hand-written summary.json
files. The second half runs each study's :smoke preset, shrunk through its argument, end to end
through the CLI and checks what it wrote against the runs' own files.
"""

import csv
import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxconv import config_files, study
from jaxconv.study import search, spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOUND = 'experiments/efficientnet_compound.py'
RS_SCALING = 'experiments/resnet_rs_scaling.py'
SEARCH = 'experiments/hparam_search.py'


def _module(path):
    return config_files.load_module(os.path.join(REPO, path))


def _write_summary(workdir, name, **values):
    os.makedirs(os.path.join(workdir, name), exist_ok=True)
    with open(os.path.join(workdir, name, 'summary.json'), 'w') as f:
        json.dump(values, f)


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # Study files name their configs relative to the repo root.


# ---- Random search --------------------------------------------------------------------------


def test_sampling_is_seeded_and_log_uniform():
    space = {'optim.base_lr': search.loguniform(1e-6, 1e-2),
             'train.label_smoothing': search.uniform(0.0, 0.2),
             'model.kwargs.se_ratio': search.choice([0.0, 0.25])}
    first, again = search.sample(space, 2000, seed=7), search.sample(space, 2000, seed=7)
    assert first == again
    assert search.sample(space, 2000, seed=8) != first
    lr = np.log10([trial['optim.base_lr'] for trial in first])
    # 10**uniform(-6, -2): log10 uniform on [-6, -2], mean -4, a quarter below -5.
    assert lr.min() >= -6 and lr.max() <= -2
    assert abs(lr.mean() + 4) < 0.1 and abs((lr < -5).mean() - 0.25) < 0.04
    smoothing = [trial['train.label_smoothing'] for trial in first]
    assert 0 <= min(smoothing) and max(smoothing) <= 0.2 and abs(np.mean(smoothing) - 0.1) < 0.01
    assert {trial['model.kwargs.se_ratio'] for trial in first} == {0.0, 0.25}


def test_narrow_keeps_the_top_k_span_and_kind():
    space = {'lr': search.loguniform(1e-4, 1.0), 'wd': search.uniform(0.0, 1.0),
             'act': search.choice(['relu', 'swish', 'gelu'])}
    trials = [{'lr': 1e-3, 'wd': 0.9, 'act': 'relu'}, {'lr': 0.2, 'wd': 0.1, 'act': 'gelu'},
              {'lr': 0.01, 'wd': 0.5, 'act': 'gelu'}, {'lr': 0.5, 'wd': 0.3, 'act': 'swish'}]
    scores = [10.0, 80.0, 70.0, None]  # The last trial failed: it never counts.
    narrowed = search.narrow(space, trials, scores, k=2)  # Top 2: trials 1 and 2, by hand.
    assert narrowed['lr'] == search.loguniform(0.01, 0.2)
    assert narrowed['wd'] == search.uniform(0.1, 0.5)
    assert narrowed['act'] == search.choice(['gelu'])
    with pytest.raises(ValueError, match='no trial has a score'):
        search.narrow(space, trials, [None] * 4, k=2)


def test_grid_of_a_budget_spans_the_ranges():
    space = {'lr': search.loguniform(1e-3, 10.0), 'wd': search.uniform(0.0, 0.2)}
    points = search.grid_points(space, 10)  # floor(sqrt(10)) = 3 values per key.
    assert len(points) == 9
    assert sorted({p['lr'] for p in points}) == pytest.approx([1e-3, 0.1, 10.0])  # Log-spaced.
    assert sorted({p['wd'] for p in points}) == pytest.approx([0.0, 0.1, 0.2])


def test_bad_study_argument_names_the_valid_settings():
    with pytest.raises(ValueError, match='takes a preset, one of smoke, paper'):
        spec.load_study(f'{SEARCH}:tiny', '/nonexistent')
    with pytest.raises(ValueError, match='unknown setting .*valid: .*trials'):
        spec.load_study(f'{SEARCH}:smoke,trails=3', '/nonexistent')
    with pytest.raises(ValueError, match='raise the tolerance'):
        spec.load_study(f'{COMPOUND}:smoke,grid=tiny,tolerance=-1', '/nonexistent')


# ---- EfficientNet compound scaling ----------------------------------------------------------


@pytest.mark.parametrize('preset', ['smoke', 'paper'])
def test_every_compound_candidate_satisfies_the_constraint(preset):
    module = _module(COMPOUND)
    settings = module.PRESETS[preset]
    grid = module.GRIDS[settings['grid']]
    tolerance = settings['tolerance']
    chosen = module.candidates(settings['grid'], tolerance)
    everything = list(itertools.product(grid['alpha'], grid['beta'], grid['gamma']))
    # Eq. 3 at phi = 1 by hand: alpha * beta^2 * gamma^2 within the tolerance of 2, and no point
    # of the grid that satisfies it is left out.
    assert chosen == [(a, b, g) for a, b, g in everything
                      if abs(a * b * b * g * g - 2) <= tolerance]
    assert all(min(point) >= 1 for point in chosen) and len(chosen) >= 4
    # The paper's B0 coefficients (1.2 * 1.1^2 * 1.15^2 = 1.92) are among the candidates.
    assert any(np.allclose(point, (1.2, 1.1, 1.15)) for point in chosen)
    runs = spec.load_study(f'{COMPOUND}:{preset}', '/nonexistent').runs
    assert len([run for run in runs if run.tags['step'] == 1]) == len(chosen)


def test_compound_step_two_follows_the_minival_argmax(tmp_path):
    workdir = str(tmp_path)
    first = spec.load_study(f'{COMPOUND}:smoke', workdir)
    assert first.waiting and not any('compound' in run.name for run in first.runs)
    candidates = [run for run in first.runs if run.tags['step'] == 1]
    # Minival favours the paper's point; the test split (never to be used) favours another.
    for index, run in enumerate(candidates):
        paper = np.allclose([run.tags[k] for k in ('alpha', 'beta', 'gamma')], (1.2, 1.1, 1.15))
        _write_summary(workdir, run.name, minival_top1=0.9 if paper else 0.5 + 0.01 * index,
                       final_top1=0.1 if paper else 0.99)
    second = spec.load_study(f'{COMPOUND}:smoke', workdir)
    assert not second.waiting
    compound = {run.name: run for run in second.runs if 'compound' in run.tags['strategy']}
    # phi = 2 by hand: depth 1.2^2, width 1.1^2 of the base's 0.25, resolution 32 * 1.15^2.
    overrides = compound['compound,phi=2'].overrides
    assert overrides['model.kwargs.depth_multiplier'] == pytest.approx(1.44)
    assert overrides['model.kwargs.width_multiplier'] == pytest.approx(0.25 * 1.21)
    assert overrides['dataset.image_size'] == round(32 * 1.3225)
    assert compound['alpha=1.2,beta=1.1,gamma=1.15'].tags['phi'] == 1


# ---- Hyperparameter search ------------------------------------------------------------------


def test_search_resamples_identically_and_narrows_round_two_inside_round_one(tmp_path):
    workdir = str(tmp_path)
    module = _module(SEARCH)
    first = spec.load_study(f'{SEARCH}:smoke', workdir)
    again = spec.load_study(f'{SEARCH}:smoke', workdir)
    assert [(r.name, dict(r.overrides)) for r in first.runs] == [
        (r.name, dict(r.overrides)) for r in again.runs]
    round_one = [run for run in first.runs if run.tags['round'] == 1]
    assert len(round_one) == 4 and first.waiting
    assert all(run.overrides['dataset.test_at_end'] is False for run in first.runs)
    scores = [0.2, 0.9, 0.4, 0.7]
    for run, score in zip(round_one, scores, strict=True):
        _write_summary(workdir, run.name, minival_top1=score)
    settings = study.parse_preset('smoke', module.PRESETS, 'hparam_search')
    spaces = module.round_spaces(settings, study.Results(workdir))
    assert len(spaces) == 2
    top = [round_one[1], round_one[3]]  # The two best minival scores, by hand.
    for key, coarse in spaces[0].items():
        fine = spaces[1][key]
        assert coarse.low <= fine.low <= fine.high <= coarse.high
        for run in top:
            assert fine.low <= run.overrides[key] <= fine.high
        assert {fine.low, fine.high} == {run.overrides[key] for run in top}
    second = spec.load_study(f'{SEARCH}:smoke', workdir)
    round_two = [run for run in second.runs if run.tags['round'] == 2]
    assert len(round_two) == 4
    for run in round_two:
        for key, fine in spaces[1].items():
            assert fine.low <= run.overrides[key] <= fine.high


# ---- Whole studies through the CLI ----------------------------------------------------------


def _run_study(spec_arg, workdir, digits_dir, tmp_path):
    environ = {k: v for k, v in os.environ.items()
               if k not in ('XLA_FLAGS', 'WANDB_API_KEY', 'JAX_COMPILATION_CACHE_DIR')}
    environ['HOME'] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, '-m', 'jaxconv.study', 'run', spec_arg, f'--workdir={workdir}', '--',
         f'--config.dataset.data_dir={digits_dir}', '--config.wandb.mode=disabled'],
        cwd=REPO, env=environ, text=True, capture_output=True, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    with open(os.path.join(workdir, 'table.csv')) as f:
        return list(csv.DictReader(f))


def _assert_png(path):
    image = np.asarray(Image.open(path).convert('RGB'))
    assert image.shape[:2] == (450, 900)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # Not blank.


def _summary(workdir, name):
    with open(os.path.join(workdir, name, 'summary.json')) as f:
        return json.load(f)


def _test_split_reads(workdir, name):
    """Eval records of the run's metrics.jsonl that read the test split."""
    summary = _summary(workdir, name)
    test_split = summary['splits']['test']
    with open(os.path.join(workdir, name, 'metrics.jsonl')) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if r.get('dataset_split') == test_split]


def test_compound_smoke_end_to_end(tmp_path, digits_dir):
    from jaxconv.models.flops import count_macs
    from jaxconv.models.registry import create_model

    workdir = str(tmp_path / 'compound')
    # Two candidates, (2, 1, 1) and (1, 1, sqrt 2); depth- and resolution-only at phi = 1 are
    # those same networks, so three runs in all.
    arg = (f'{COMPOUND}:smoke,grid=tiny,strategies=depth/resolution,max_phi=1,steps=6,'
           'base_width=0.125')
    rows = _run_study(arg, workdir, digits_dir, tmp_path)
    assert [row['run'] for row in rows] == ['base', 'alpha=1,beta=1,gamma=1.414',
                                            'alpha=2,beta=1,gamma=1']
    assert all(row['status'] == 'done' for row in rows)
    for column in ('run', 'status', 'alpha', 'beta', 'gamma', 'phi', 'strategy', 'depth',
                   'width', 'resolution', 'macs', 'params', 'minival_top1', 'test_top1',
                   'img_per_sec', 'predicted_macs'):
        assert column in rows[0], column
    # The choice is the minival argmax over the candidates, recomputed from their summaries.
    candidates = rows[1:]
    scores = {row['run']: _summary(workdir, row['run'])['minival_top1'] for row in candidates}
    chosen = [row['run'] for row in candidates if 'compound' in row['strategy'].split('+')]
    assert len(chosen) == 1 and scores[chosen[0]] == max(scores.values())
    # Measured multiply-adds are count_macs of the same network built directly.
    for row in rows:
        summary = _summary(workdir, row['run'])
        config = summary['config']
        model = create_model(config['model']['name'], num_classes=10,
                             **config['model']['kwargs'])
        assert summary['macs'] == count_macs(model, config['dataset']['image_size'], 1)
        assert summary['resolution'] == config['dataset']['image_size']
        assert summary['width_multiplier'] == config['model']['kwargs']['width_multiplier']
    depth_row = next(row for row in rows if row['run'] == 'alpha=2,beta=1,gamma=1')
    assert depth_row['strategy'] == 'candidate+depth' or 'depth' in depth_row['strategy']
    assert float(depth_row['predicted_macs']) == 2 * float(rows[0]['macs'])
    _assert_png(os.path.join(workdir, 'compound.png'))
    assert os.path.exists(os.path.join(workdir, 'table.md'))


def test_resnet_rs_scaling_smoke_end_to_end(tmp_path, digits_dir):
    workdir = str(tmp_path / 'rs')
    arg = f'{RS_SCALING}:smoke,steps=6,epochs=1/3,widths=,resolutions=,base_width=0.125'
    rows = _run_study(arg, workdir, digits_dir, tmp_path)
    assert len(rows) == 4 and all(row['status'] == 'done' for row in rows)
    assert {row['strategy'] for row in rows} == {'base', 'depth'}
    assert {row['regime'] for row in rows} == {'1 epochs', '3 epochs'}
    # One winner per regime: the highest top1 among its scaled runs, recomputed here.
    for epochs in ('1 epochs', '3 epochs'):
        regime = [row for row in rows if row['regime'] == epochs and row['strategy'] != 'base']
        winners = [row for row in regime if row['wins']]
        assert len(winners) == 1
        assert float(winners[0]['top1']) == max(float(row['top1']) for row in regime)
    deeper = [row for row in rows if row['strategy'] == 'depth']
    base = [row for row in rows if row['strategy'] == 'base']
    assert float(deeper[0]['macs']) > float(base[0]['macs'])
    _assert_png(os.path.join(workdir, 'scaling.png'))


def test_hparam_search_smoke_end_to_end(tmp_path, digits_dir):
    workdir = str(tmp_path / 'search')
    arg = f'{SEARCH}:smoke,steps=6,trials=2,top_k=1'
    rows = _run_study(arg, workdir, digits_dir, tmp_path)
    names = [row['run'] for row in rows]
    assert names == ['round=1,trial=0', 'round=1,trial=1', 'round=2,trial=0', 'round=2,trial=1',
                     'grid,trial=0', 'winner']
    assert all(row['status'] == 'done' for row in rows)
    # The winner is the minival argmax over every trial, and only it read the test split.
    trials = names[:-1]
    scores = {name: _summary(workdir, name)['minival_top1'] for name in trials}
    winner = rows[-1]
    assert scores[winner['chosen_from']] == max(scores.values())
    for name in trials:
        assert _test_split_reads(workdir, name) == []
        assert 'final_top1' not in _summary(workdir, name)
    assert len(_test_split_reads(workdir, 'winner')) == 1
    assert winner['test_top1'] != '' and all(row['test_top1'] == '' for row in rows[:-1])
    chosen = next(row for row in rows if row['run'] == winner['chosen_from'])
    for key in ('optim.base_lr', 'optim.weight_decay'):
        assert winner[key] == chosen[key]
    # Round 2's values lie in the span of round 1's top-1 trial: the single best value.
    best_one = max(names[:2], key=scores.get)
    round_one = next(row for row in rows if row['run'] == best_one)
    for row in rows[2:4]:
        assert math.isclose(float(row['optim.base_lr']), float(round_one['optim.base_lr']))
    _assert_png(os.path.join(workdir, 'search.png'))
