"""The command line as a user runs it: the default job, and one-line errors for bad input."""

import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path, **env):
    """Runs `python -m jaxconv.main` like README does: one CPU device, no W&B credentials."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ('XLA_FLAGS', 'WANDB_MODE', 'WANDB_API_KEY')}
    environ.update(HOME=str(tmp_path), **env)  # No ~/.netrc: W&B has no credentials.
    return subprocess.run([sys.executable, '-m', 'jaxconv.main', *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=600)


def test_default_job_trains_lenet5_on_digits(tmp_path):
    workdir, data_dir = tmp_path / 'run', tmp_path / 'tfds'
    result = _run(['--config=configs/lenet5_digits.py', f'--workdir={workdir}',
                   f'--config.dataset.data_dir={data_dir}'], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((workdir / 'summary.json').read_text())
    assert summary['final_top1'] >= 0.97
    assert f'test top-1 {summary["final_top1"]:.4f}' in result.stdout  # The final summary line.
    assert json.loads((workdir / 'config.json').read_text())['model']['name'] == 'lenet5'
    records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
    assert records[-1] == {'step': summary['steps'], 'split': 'eval', 'dataset_split': 'test',
                           'loss': summary['final_loss'], 'top1': summary['final_top1'],
                           'top5': summary['final_top5']}
    assert str(summary['steps']) in os.listdir(workdir / 'checkpoints')
    offline_runs = glob.glob(str(workdir / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
    assert len(offline_runs) == 1  # No credentials: W&B logged offline, for `wandb sync`.


@pytest.mark.parametrize('overrides, message', [
    (['--config.model.name=lenet6'], "unknown model 'lenet6'; did you mean lenet5"),
    (['--config.optim.bse_lr=0.1'], 'unknown config key --config.optim.bse_lr; did you mean '
                                    'base_lr? valid keys in optim: adam_b1, '),
    (['--config.dataset.name=digts'], "unknown dataset 'digts'; did you mean digits,"),
    (['--config.dataset.name=cifar10', '--config.dataset.data_dir={empty}'],
     "dataset 'cifar10' is not prepared in {empty}: run `tfds build cifar10"),
    (['--config.optim.schedule=cosin'], "unknown optim.schedule 'cosin'; valid: cosine, step"),
])
def test_bad_input_exits_with_one_line_naming_the_fix(tmp_path, digits_dir, overrides, message):
    empty = str(tmp_path / 'empty')
    overrides = [o.format(empty=empty) for o in overrides]
    workdir = tmp_path / 'run'
    result = _run(['--config=configs/lenet5_digits.py', f'--workdir={workdir}',
                   f'--config.dataset.data_dir={digits_dir}', *overrides], tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith('jaxconv: error:')]
    assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    assert errors[0].startswith('jaxconv: error: ' + message.format(empty=empty))


def test_missing_config_file_lists_the_config_files(tmp_path):
    result = _run(['--config=configs/lenet5_digit.py', f'--workdir={tmp_path}'], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ('jaxconv: error: config file configs/lenet5_digit.py not '
                                     'found; files in configs/: ' + ', '.join(sorted(
                                         f for f in os.listdir(os.path.join(REPO, 'configs'))
                                         if f.endswith('.py'))))
