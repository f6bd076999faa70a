"""Whole studies through the CLI, as a user runs them: the smoke ladder (interrupted, with a
failing rung, resumed, repaired, re-run) and a 3-run study through the Slurm launcher's code path
on submitit's local executor."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from configs import resnet_rs
from jaxconv.study import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LADDER = 'experiments/resnet_rs_ladder.py'


def _environment(tmp_path):
    """One CPU device per run (no test-wide virtual devices), no W&B credentials."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ('XLA_FLAGS', 'WANDB_API_KEY', 'JAX_COMPILATION_CACHE_DIR')}
    environ['HOME'] = str(tmp_path)
    return environ


def _study(args, tmp_path, **kwargs):
    return subprocess.Popen([sys.executable, '-m', 'jaxconv.study', *args], cwd=REPO,
                            env=_environment(tmp_path), text=True, **kwargs)


def _finish(process, timeout=1200):
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def _launches(workdir):
    """Each run's launch record (attempt count, state), from the study's own files."""
    found = {}
    for rung in resnet_rs.RUNGS:
        path = os.path.join(workdir, rung, 'launch.json')
        if os.path.exists(path):
            with open(path) as f:
                found[rung] = json.load(f)
    return found


def _has_train_record(run_dir):
    path = os.path.join(run_dir, 'metrics.jsonl')
    return os.path.exists(path) and '"split": "train"' in open(path).read()


def _assert_png(path, size):
    image = np.asarray(Image.open(path).convert('RGB'))
    assert image.shape[:2] == (size[1], size[0])
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # Not blank.
    assert (image.mean(axis=2) < 128).mean() > 0.005


def test_smoke_ladder_survives_sigterm_and_a_failing_rung(tmp_path, digits_dir):
    workdir = str(tmp_path / 'ladder')
    extra = ['--', f'--config.dataset.data_dir={digits_dir}', '--config.wandb.mode=disabled']
    # The same ladder with a bad override on one rung: that rung must fail, the others go on.
    failing = tmp_path / 'failing_ladder.py'
    failing.write_text(textwrap.dedent(f'''
        import dataclasses
        from jaxconv import config_files
        ladder = config_files.load_module({os.path.join(REPO, LADDER)!r})

        def get_study(arg):
            study = ladder.get_study(arg)
            study.runs = [dataclasses.replace(run, overrides={{**run.overrides, 'train.nope': 1}})
                          if run.name == '+dropout' else run for run in study.runs]
            return study
    '''))

    # 1. SIGTERM to the runner while the fifth rung trains: it stops cleanly, nothing after it ran.
    runner = _study(['run', f'{failing}:smoke', f'--workdir={workdir}', *extra], tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    fifth = os.path.join(workdir, resnet_rs.RUNGS[4])
    deadline = time.time() + 1200
    while not _has_train_record(fifth) and runner.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    runner.send_signal(signal.SIGTERM)
    code, out = _finish(runner)
    assert code == 128 + signal.SIGTERM, out[-3000:]
    first = _launches(workdir)
    done = [rung for rung, launch in first.items() if launch['state'] == 'finished']
    assert done == list(resnet_rs.RUNGS[:len(done)]) and len(done) >= 4
    assert set(first) <= set(resnet_rs.RUNGS[:len(done) + 1])  # Nothing started after it.
    interrupted = [rung for rung, launch in first.items() if launch['state'] == 'interrupted']

    # 2. Again: only the missing rungs train (the interrupted one resumes); +dropout fails.
    code, out = _finish(_study(['run', f'{failing}:smoke', f'--workdir={workdir}', *extra],
                               tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    assert code == 1, out[-3000:]
    second = _launches(workdir)
    for rung in done:
        assert second[rung] == first[rung]  # Not touched.
    for rung in interrupted:
        assert second[rung]['attempt'] == 2 and second[rung]['state'] == 'finished'
        log = open(second[rung]['log']).read()
        assert 'resuming from the checkpoint' in log or first[rung].get('exit_code', 0) < 0
    assert second['+dropout']['state'] == 'failed'
    assert 'unknown config key --config.train.nope' in second['+dropout']['error']
    others = [rung for rung in resnet_rs.RUNGS if rung != '+dropout']
    assert all(second[rung]['state'] == 'finished' for rung in others)
    status = subprocess.run([sys.executable, '-m', 'jaxconv.study', 'status', f'{LADDER}:smoke',
                             f'--workdir={workdir}'], cwd=REPO, env=_environment(tmp_path),
                            capture_output=True, text=True, check=True).stdout
    line = next(line for line in status.splitlines() if line.startswith('+dropout '))
    assert 'failed' in line and 'unknown config key' in line and 'train.log' in line
    assert '10 done, 0 running, 1 failed, 0 pending' in status
    assert '| +dropout | failed |' in open(os.path.join(workdir, 'table.md')).read()

    # 3. The real ladder: only the repaired rung trains; table and figures from the summaries.
    code, out = _finish(_study(['run', f'{LADDER}:smoke', f'--workdir={workdir}', *extra],
                               tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    assert code == 0, out[-3000:]
    third = _launches(workdir)
    assert {rung for rung in resnet_rs.RUNGS if third[rung] != second[rung]} == {'+dropout'}
    assert third['+dropout']['state'] == 'finished'
    with open(os.path.join(workdir, 'table.csv')) as f:
        rows = list(csv.DictReader(f))
    assert [row['run'] for row in rows] == list(resnet_rs.RUNGS)
    compared = []
    for row in rows:
        with open(os.path.join(workdir, row['run'], 'summary.json')) as f:
            summary = json.load(f)
        ema = 'final_ema_top1' in summary
        assert ema == (resnet_rs.RUNGS.index(row['run']) >= resnet_rs.RUNGS.index('+ema'))
        compared.append(100 * summary['final_ema_top1' if ema else 'final_top1'])
        assert float(row['top1']) == pytest.approx(compared[-1])
        assert float(row['test_top1']) == pytest.approx(100 * summary['final_top1'])
        assert float(row['minival_top1']) == pytest.approx(100 * summary['minival_top1'])
        assert float(row['published_top1']) == resnet_rs.PUBLISHED_TOP1[row['run']]
        assert int(row['macs']) == summary['macs'] > 0 and float(row['img_per_sec']) > 0
    for index in range(1, len(rows)):
        assert float(rows[index]['delta']) == pytest.approx(compared[index] - compared[index - 1])
        assert float(rows[index]['delta_baseline']) == pytest.approx(compared[index] - compared[0])
    for name in ('ladder', 'top1_vs_macs', 'top1_vs_step_time'):
        _assert_png(os.path.join(workdir, f'{name}.png'), (900, 450))
        assert os.path.exists(os.path.join(workdir, f'{name}.csv'))
    table_md = open(os.path.join(workdir, 'table.md')).read()
    table_csv = open(os.path.join(workdir, 'table.csv')).read()

    # 4. Once more: nothing trains, and the same table comes out.
    code, out = _finish(_study(['run', f'{LADDER}:smoke', f'--workdir={workdir}', *extra],
                               tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    assert code == 0, out[-3000:]
    assert 'to train' not in out
    assert _launches(workdir) == third
    assert open(os.path.join(workdir, 'table.md')).read() == table_md
    assert open(os.path.join(workdir, 'table.csv')).read() == table_csv


def test_slurm_launcher_runs_a_study_through_submitit(tmp_path, digits_dir, monkeypatch):
    """Three LeNet-5 runs as one submitit batch on its local executor: the code path a cluster
    takes (pickled task, job, result), each run training in its own workdir."""
    study_file = tmp_path / 'three.py'
    study_file.write_text(textwrap.dedent('''
        from jaxconv import study

        def get_study(arg):
            points = study.sweep('config.optim.base_lr', [0.1, 0.2, 0.4])
            return study.grid_runs('configs/lenet5_digits.py', points,
                                   overrides={'train.steps': 12, 'train.log_every': 4,
                                              'optim.warmup_epochs': 0.1})
    '''))
    monkeypatch.chdir(REPO)
    monkeypatch.setenv('HOME', str(tmp_path))
    for key in ('XLA_FLAGS', 'WANDB_API_KEY', 'JAX_COMPILATION_CACHE_DIR'):
        monkeypatch.delenv(key, raising=False)  # The jobs inherit this process's environment.
    workdir = str(tmp_path / 'study')
    code = cli.main(['run', str(study_file), f'--workdir={workdir}', '--launcher=slurm',
                     '--submitit-cluster=local', '--time-min=20', '--',
                     f'--config.dataset.data_dir={digits_dir}', '--config.wandb.mode=disabled'])
    assert code == 0
    for name in ('base_lr=0.1', 'base_lr=0.2', 'base_lr=0.4'):
        with open(os.path.join(workdir, name, 'summary.json')) as f:
            summary = json.load(f)
        assert summary['steps'] == 12
        assert summary['config']['optim']['base_lr'] == float(name.split('=')[1])
        assert summary['config']['wandb']['group'] == 'study'
    with open(os.path.join(workdir, 'table.csv')) as f:
        assert [row['status'] for row in csv.DictReader(f)] == ['done'] * 3
