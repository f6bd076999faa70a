"""The study machinery without training: grids, run state from files, tables, figures, launchers'
slots and the scripts emitted for sbatch and W&B agents."""

import csv
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from PIL import Image

from jaxconv.study import cli, grid, launch, plots, records, spec, table, task
from jaxconv.study.spec import Run, Study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- Grids and runs ----------------------------------------------------------------------------

def test_grid_helpers_follow_big_vision_hyper():
    lrs = grid.sweep('config.optim.base_lr', [0.1, 0.4])
    depths = grid.sweep('depth', [18, 34])
    assert grid.product(lrs, depths) == [
        {'config.optim.base_lr': 0.1, 'depth': 18}, {'config.optim.base_lr': 0.1, 'depth': 34},
        {'config.optim.base_lr': 0.4, 'depth': 18}, {'config.optim.base_lr': 0.4, 'depth': 34}]
    assert grid.zip(lrs, depths) == [{'config.optim.base_lr': 0.1, 'depth': 18},
                                     {'config.optim.base_lr': 0.4, 'depth': 34}]
    assert grid.chain(grid.fixed('depth', 50), depths) == [{'depth': 50}, {'depth': 18},
                                                           {'depth': 34}]
    with pytest.raises(ValueError, match='one length'):
        grid.zip(lrs, grid.sweep('depth', [18]))
    with pytest.raises(ValueError, match='two values for depth'):
        grid.product(depths, depths)


def test_grid_runs_split_overrides_from_tags_and_name_stably():
    points = grid.product(grid.sweep('config.optim.base_lr', [0.1, 0.4]),
                          grid.sweep('strategy', ['depth', 'width']))
    runs = spec.grid_runs('configs/lenet5_digits.py', points,
                          name=lambda p: f'{p["strategy"]}-lr{p["config.optim.base_lr"]}',
                          overrides={'train.steps': 10})
    assert [run.name for run in runs] == ['depth-lr0.1', 'width-lr0.1', 'depth-lr0.4',
                                          'width-lr0.4']
    assert runs[2].overrides == {'train.steps': 10, 'optim.base_lr': 0.4}
    assert runs[2].tags == {'strategy': 'depth'}
    assert runs[2].trainer_args() == ['--config=configs/lenet5_digits.py',
                                      '--config.train.steps=10', '--config.optim.base_lr=0.4']
    # Default names: the tags, or the config keys' last parts when there are none.
    assert [run.name for run in spec.grid_runs('c.py', grid.sweep('depth', [18, 34]))] == [
        'depth=18', 'depth=34']
    assert spec.grid_runs('c.py', grid.sweep('config.optim.base_lr', [0.1]))[0].name == (
        'base_lr=0.1')
    # Tags that do not tell runs apart give clashing names, which a study may not have.
    clashing = spec.grid_runs('c.py', points)
    with pytest.raises(ValueError, match="two runs are named 'strategy=depth'"):
        spec.check_runs(clashing)


def test_bad_run_names_and_config_paths_are_refused(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match='must match'):
        spec.check_runs([Run('a/b', 'configs/lenet5_digits.py')])
    with pytest.raises(ValueError, match='config file configs/nope.py not found'):
        spec.check_runs([Run('a', 'configs/nope.py:x=1')])


def test_the_ladder_study_lists_every_rung_with_its_switch(monkeypatch):
    """Each rung's run is the config file's rung; smoke scales every epoch count by 2/90."""
    from configs import resnet_rs

    monkeypatch.chdir(REPO)
    smoke = spec.load_study('experiments/resnet_rs_ladder.py:smoke', '/nonexistent')
    assert [run.name for run in smoke.runs] == list(resnet_rs.RUNGS)
    epochs = {run.name: run.config_dict().train.epochs for run in smoke.runs}
    assert epochs['baseline'] == pytest.approx(2.0)
    assert epochs['+resnet_d'] == pytest.approx(350 * 2 / 90)
    paper = spec.load_study('experiments/resnet_rs_ladder.py:paper', '/nonexistent')
    assert paper.runs[-1].config == 'configs/resnet_rs.py:rung=+resnet_d'
    with pytest.raises(ValueError, match='one of smoke, paper'):
        spec.load_study('experiments/resnet_rs_ladder.py', '/nonexistent')


def test_overrides_after_the_separator_must_be_config_keys():
    with pytest.raises(ValueError, match="must look like --config.KEY=VALUE, got '--steps=3'"):
        cli.parse(['run', 'x.py', '--workdir=d', '--', '--steps=3'])
    assert cli.main(['run', 'x.py', '--workdir=d', '--', 'bad']) == 2


# ---- Run state from files ----------------------------------------------------------------------

def _write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(value if isinstance(value, str) else json.dumps(value))


def test_status_reads_summary_lock_and_launch_record(tmp_path):
    here = socket.gethostname()
    _write(tmp_path / 'a' / 'summary.json', {'final_top1': 0.5})
    # A lock held by a live process on this host (this test's own pid).
    _write(tmp_path / 'b' / 'workdir.lock', {'host': here, 'pid': os.getpid(), 'started': 't'})
    # A launch record of a process that has exited: not running, and it failed.
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    _write(tmp_path / 'c' / 'launch.json', {'state': 'failed', 'exit_code': 2, 'pid': gone.pid,
                                            'host': here, 'error': 'jaxconv: error: boom',
                                            'log': 'c/train.log'})
    _write(tmp_path / 'd' / 'launch.json', {'state': 'running', 'pid': gone.pid, 'host': here})
    os.makedirs(tmp_path / 'd' / 'checkpoints' / '20')
    _write(tmp_path / 'e' / 'launch.json', {'state': 'running', 'pid': 1, 'host': 'elsewhere'})
    states = {name: records.run_status(str(tmp_path / name)) for name in 'abcdef'}
    assert {name: s.state for name, s in states.items()} == {
        'a': 'done', 'b': 'running', 'c': 'failed', 'd': 'pending', 'e': 'running', 'f': 'pending'}
    assert states['c'].error == 'jaxconv: error: boom' and states['c'].exit_code == 2
    assert states['d'].detail == 'resumes from step 20'
    assert 'another host' in states['e'].detail


def test_last_error_line_prefers_the_trainers_error(tmp_path):
    log = tmp_path / 'train.log'
    log.write_text('step 1\r 10%|#  |\r 20%|## |\njaxconv: error: unknown config key x\n'
                   'W0000 shutdown noise\n')
    assert task.last_error_line(str(log)) == 'jaxconv: error: unknown config key x'
    log.write_text('Traceback (most recent call last):\n  File "x"\nKeyError: \'y\'\n')
    assert task.last_error_line(str(log)) == "KeyError: 'y'"


def test_task_records_a_failed_attempt_and_skips_a_finished_run(tmp_path):
    run_dir = str(tmp_path / 'r')
    failing = task.Task(run_dir, [sys.executable, '-c',
                                  'import sys; print("jaxconv: error: bad key"); sys.exit(2)'],
                        str(tmp_path))
    assert task.execute(failing, echo=False) == 'failed'
    status = records.run_status(run_dir)
    assert (status.state, status.exit_code, status.error) == ('failed', 2,
                                                              'jaxconv: error: bad key')
    assert status.log == os.path.join(run_dir, 'train.log')
    _write(os.path.join(run_dir, 'summary.json'), {})
    assert task.execute(failing, echo=False) == 'done'  # Not run again.
    assert records.read_json(os.path.join(run_dir, 'launch.json'))['attempt'] == 1


# ---- Tables and figures ------------------------------------------------------------------------

def _finished(workdir, name, top1, ema_top1=None, macs=1e6, ms=10.0):
    summary = {'final_top1': top1, 'macs': macs, 'params': 1000, 'img_per_sec': 128 / ms * 1e3,
               'ms_per_step': ms, 'steps': 10, 'config': {'wandb': {
                   'mode': 'disabled', 'project': 'p', 'entity': ''}}}
    if ema_top1 is not None:
        summary['final_ema_top1'] = ema_top1
    _write(os.path.join(workdir, name, 'summary.json'), summary)


def _ladder_study(monkeypatch):
    monkeypatch.chdir(REPO)
    return spec.load_study('experiments/resnet_rs_ladder.py:smoke', '/unused')


def test_ladder_table_compares_ema_top1_from_the_ema_rung_on(tmp_path, monkeypatch):
    """Hand-made summaries: the deltas are differences of the EMA top-1 where EMA is on."""
    study = _ladder_study(monkeypatch)
    workdir = str(tmp_path)
    _finished(workdir, 'baseline', 0.80)
    _finished(workdir, '+cosine', 0.81)
    _finished(workdir, '+epochs', 0.79)
    _finished(workdir, '+ema', 0.70, ema_top1=0.83)
    _write(os.path.join(workdir, '+label_smoothing', 'launch.json'), {
        'state': 'failed', 'exit_code': 1, 'error': 'jaxconv: error: x', 'log': 'l'})
    rows, markdown = table.write_tables(study, workdir)
    by_run = {row['run']: row for row in rows}
    assert by_run['+cosine']['delta'] == pytest.approx(1.0)
    assert by_run['+epochs']['delta_baseline'] == pytest.approx(-1.0)
    assert by_run['+ema']['top1'] == pytest.approx(83.0)  # EMA, not the raw 70.
    assert by_run['+ema']['delta'] == pytest.approx(4.0)
    assert by_run['+ema']['published_delta'] == pytest.approx(79.1 - 78.8)
    assert by_run['+ema']['switch'] == 'model.kwargs.bn_momentum=0, train.ema_decay=0.9999'
    assert by_run['+label_smoothing']['status'] == 'failed'
    assert by_run['+label_smoothing']['delta'] is None
    assert by_run['+se']['status'] == 'pending'
    assert ('| +ema | done | model.kwargs.bn_momentum=0, train.ema_decay=0.9999 | 70.00 | 83.00 '
            '| 83.00 | +4.00 | +3.00 |') in markdown
    assert '- +label_smoothing: jaxconv: error: x' in markdown
    with open(tmp_path / 'table.csv') as f:
        csv_rows = list(csv.DictReader(f))
    assert [row['run'] for row in csv_rows] == [run.name for run in study.runs]
    assert float(csv_rows[3]['ema_top1']) == pytest.approx(83.0)
    assert csv_rows[4]['status'] == 'failed' and csv_rows[4]['error'] == 'jaxconv: error: x'


def _assert_png(path, size):
    image = np.asarray(Image.open(path).convert('RGB'))
    assert image.shape[:2] == (size[1], size[0])
    # Not blank: many distinct colours, and ink (dark pixels) beyond a border's worth.
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20
    assert (image.mean(axis=2) < 128).mean() > 0.005


def test_figures_are_drawn_with_their_data_beside_them(tmp_path, monkeypatch):
    study = _ladder_study(monkeypatch)
    workdir = str(tmp_path)
    for index, run in enumerate(study.runs[:6]):
        _finished(workdir, run.name, 0.8 + 0.01 * index, macs=1e6 * (1 + index % 3),
                  ms=5.0 + index)
    rows = table.build_rows(study, workdir)
    written = plots.write_plots(study, rows, workdir)
    assert [os.path.basename(p) for p in written] == ['ladder.png', 'top1_vs_macs.png',
                                                      'top1_vs_step_time.png']
    for path in written:
        _assert_png(path, (900, 450))
    with open(tmp_path / 'ladder.csv') as f:
        ladder = list(csv.DictReader(f))
    assert [row['rung'] for row in ladder] == [run.name for run in study.runs[1:]]
    assert float(ladder[0]['delta']) == pytest.approx(1.0)
    assert float(ladder[0]['published_delta']) == pytest.approx(79.3 - 79.0)
    with open(tmp_path / 'top1_vs_step_time.csv') as f:
        points = list(csv.DictReader(f))
    assert [(row['run'], float(row['ms_per_step'])) for row in points] == [
        (run.name, 5.0 + index) for index, run in enumerate(study.runs[:6])]


def test_wandb_table_is_logged_in_the_studys_group(tmp_path, monkeypatch):
    """Offline W&B: the table file holds the same columns and rows as table.csv."""
    study = Study(runs=[Run('a', 'configs/lenet5_digits.py', tags={'depth': 1}),
                        Run('b', 'configs/lenet5_digits.py', tags={'depth': 2})])
    workdir = str(tmp_path)
    _finished(workdir, 'a', 0.5)
    rows = table.build_rows(study, workdir)
    summary_path = os.path.join(workdir, 'a', 'summary.json')
    summary = records.read_json(summary_path)
    summary['config']['wandb']['mode'] = 'offline'
    _write(summary_path, summary)
    monkeypatch.setenv('HOME', str(tmp_path))  # No credentials.
    assert table.log_wandb_table(study, rows, workdir, 'my_study') == 'offline'
    found = [os.path.join(root, name) for root, _, names in os.walk(tmp_path / 'wandb')
             for name in names if name.endswith('.table.json')]
    assert len(found) == 1
    with open(found[0]) as f:
        logged = json.load(f)
    assert logged['columns'] == table.all_columns(rows)
    assert [row[0] for row in logged['data']] == ['a', 'b']
    assert logged['data'][0][logged['columns'].index('top1')] == pytest.approx(50.0)


# ---- Launchers and emitted scripts -------------------------------------------------------------

def test_gpu_slots_pin_runs_to_disjoint_gpus():
    assert launch.gpu_slots(['0', '1', '2', '3'], 2) == ['0,1', '2,3']
    assert launch.gpu_slots(['0', '1', '2'], 2) == ['0,1']
    assert launch.gpu_slots([], 2) == [None]  # CPU: one run at a time.
    assert launch.gpu_slots(['0', '1'], 0) == [None]
    with pytest.raises(ValueError, match='--gpus-per-run=3 but this machine shows 2'):
        launch.gpu_slots(['0', '1'], 3)


def test_local_launcher_runs_one_per_slot_at_once(tmp_path):
    """Four runs on two slots: each sees its slot's GPUs, and two overlap (each waits until
    another one has started, which one-at-a-time launching could never satisfy)."""
    waiter = textwrap.dedent('''
        import os, sys, time, glob
        name, folder = sys.argv[1], sys.argv[2]
        open(os.path.join(folder, name + '.started'), 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])
        deadline = time.time() + 60
        while len(glob.glob(os.path.join(folder, '*.started'))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        sys.exit(0 if len(glob.glob(os.path.join(folder, '*.started'))) >= 2 else 3)
    ''')
    planned = [launch.Planned(Run(name, 'unused.py'), task.Task(
        str(tmp_path / name), [sys.executable, '-c', waiter, name, str(tmp_path)], str(tmp_path)))
        for name in ('r0', 'r1', 'r2', 'r3')]
    endings = launch.LocalLauncher(['0,1', '2,3']).launch(planned)
    assert set(endings.values()) == {'failed'}  # Exit 0 without a summary.json is no result.
    for name in endings:  # But every run ran to its exit code 0, so all of them overlapped.
        assert records.read_json(str(tmp_path / name / 'launch.json'))['exit_code'] == 0
        assert (tmp_path / f'{name}.started').read_text() in ('0,1', '2,3')


def _planned(tmp_path):
    runs = [Run('baseline', 'configs/resnet_rs.py:rung=baseline', {'train.steps': 5}),
            Run('+cosine', 'configs/resnet_rs.py:rung=+cosine', {'optim.schedule': 'cosine'})]
    return launch.plan(runs, str(tmp_path / 'study'), 'study', ['--config.wandb.mode=disabled'])


def test_sbatch_script_passes_bash_n_and_runs_each_line(tmp_path):
    planned = _planned(tmp_path)
    options = launch.SlurmOptions(partition='gpu', gpus_per_node=8, nodes=2, max_parallel=1)
    script = launch.emit_sbatch(planned, str(tmp_path / 'study'), 'study',
                                'experiments/x.py:smoke', options)
    assert subprocess.run(['bash', '-n', script]).returncode == 0
    text = open(script).read()
    for directive in ('--array=0-1%1', '--nodes=2', '--gpus-per-node=8', '--partition=gpu',
                      '--signal=TERM@120'):
        assert f'#SBATCH {directive}\n' in text
    with open(tmp_path / 'study' / 'sbatch' / 'commands.txt') as f:
        lines = f.read().splitlines()
    for line, item in zip(lines, planned, strict=True):
        words = shlex.split(line)
        assert words[1:5] == ['-m', 'jaxconv.study.task', item.task.run_dir, '--']
        assert words[5:] == item.task.command
    # Array task 1 runs line 2: `srun` replaced by a stand-in that prints its command.
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('#!/bin/bash\nprintf "%s\\n" "$@"\n')
    (bin_dir / 'srun').chmod(0o755)
    result = subprocess.run(['bash', script], capture_output=True, text=True, env={
        **os.environ, 'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'SLURM_ARRAY_TASK_ID': '1'})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['bash', '-c', lines[1]]


def test_wandb_sweep_expands_to_valid_cli_arguments(tmp_path):
    """The agent's own expansion of `${args}` (wandb's sweep utils) gives our CLI one run."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    planned = _planned(tmp_path)
    path = launch.emit_wandb_sweep(planned, str(tmp_path / 'study'), 'study',
                                   'experiments/x.py:smoke', ['--config.wandb.mode=disabled'])
    with open(path) as f:
        sweep = yaml.safe_load(f)
    assert sweep['method'] == 'grid'
    assert sweep['parameters']['run']['values'] == ['baseline', '+cosine']
    for name in sweep['parameters']['run']['values']:
        expanded = sweep_utils.create_sweep_command_args({'args': {'run': {'value': name}}})
        command = [word for part in sweep['command'] for word in (
            expanded['args'] if part == '${args}' else [part]) if part != '${env}']
        assert command[:4] == [sys.executable, '-m', 'jaxconv.study', 'run']
        args, extra = cli.parse(command[3:])
        assert (args.command, args.study, args.run) == ('run', 'experiments/x.py:smoke', [name])
        assert args.workdir == str(tmp_path / 'study')
        assert extra == ['--config.wandb.mode=disabled']


def test_markdown_cells_escape_pipes():
    assert table.format_cell('error', 'a|b') == 'a\\|b'
    assert table.format_cell('macs', 4.1e9) == '4.1G'
    assert table.format_cell('delta', 0.25) == '+0.25'
    assert io.StringIO(table.to_csv([{'run': 'a', 'x': None}], ['run', 'x'])).read() == (
        'run,x\na,\n')


def test_slurm_flags_reach_the_job_array_submitit_submits(tmp_path, monkeypatch):
    """Stand-ins for srun and sbatch catch the script submitit writes for a cluster."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('#!/bin/bash\nexit 0\n')
    (bin_dir / 'sbatch').write_text(f'#!/bin/bash\ncp "$1" {tmp_path}/submitted.sh\n'
                                    'echo "Submitted batch job 4242"\n')
    for name in ('srun', 'sbatch'):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
    planned = _planned(tmp_path) * 2  # Four array tasks, so a cap of 3 shows.
    options = launch.SlurmOptions(partition='gpu', time_min=90, gpus_per_node=8, nodes=2,
                                  cpus_per_task=12, max_parallel=3)
    executor = launch.SlurmLauncher(str(tmp_path / 'study'), 'study', options)._executor()
    with executor.batch():
        jobs = [executor.submit(launch.SlurmTask(item.task)) for item in planned]
    assert [job.job_id for job in jobs] == ['4242_0', '4242_1', '4242_2', '4242_3']
    script = (tmp_path / 'submitted.sh').read_text()
    for directive in ('--array=0-3%3', '--partition=gpu', '--time=90', '--nodes=2',
                      '--ntasks-per-node=1', '--gpus-per-node=8', '--cpus-per-task=12',
                      '--job-name=study'):
        assert f'#SBATCH {directive}\n' in script
    # submitit warns the task before the time limit; SlurmTask.checkpoint then stops the trainer.
    assert '#SBATCH --signal=USR2@' in script


def test_a_staged_study_defines_later_runs_from_earlier_results(tmp_path, monkeypatch):
    """Round 2 exists once round 1 has finished and starts from round 1's best minival run
    (coarse-to-fine); the launcher is a stand-in that 'trains' by writing summaries."""
    monkeypatch.chdir(REPO)
    study_file = tmp_path / 'staged.py'
    study_file.write_text(textwrap.dedent('''
        from jaxconv import study

        def get_study(arg, results):
            first = study.grid_runs('configs/lenet5_digits.py',
                                    study.sweep('config.optim.base_lr', [0.1, 0.2, 0.4]))
            names = [run.name for run in first]
            if not results.done(names):
                return study.Study(first, waiting='round 2 starts from round 1\\'s best')
            best = results.summary(results.best(names))['config']['optim']['base_lr']
            return study.Study(first + [
                study.Run(f'round2-{i}', 'configs/lenet5_digits.py', {'optim.base_lr': lr})
                for i, lr in enumerate((best / 2, best * 2))])
    '''))
    minival = {0.1: 0.5, 0.2: 0.9, 0.4: 0.7}  # Round 1's winner: 0.2.
    launched = []

    def fake_launch(self, planned):
        launched.append([item.run.name for item in planned])
        for item in planned:
            lr = item.run.overrides['optim.base_lr']
            _write(os.path.join(item.task.run_dir, 'summary.json'), {
                'final_top1': 0.5, 'minival_top1': minival.get(lr, 0.8),
                'config': {'optim': {'base_lr': lr}, 'wandb': {'mode': 'disabled'}}})
        return {item.run.name: 'finished' for item in planned}

    monkeypatch.setattr(launch.LocalLauncher, 'launch', fake_launch)
    workdir = str(tmp_path / 'study')
    assert cli.main(['run', str(study_file), f'--workdir={workdir}']) == 0
    assert launched == [['base_lr=0.1', 'base_lr=0.2', 'base_lr=0.4'], ['round2-0', 'round2-1']]
    round2 = [records.read_summary(os.path.join(workdir, f'round2-{i}')) for i in (0, 1)]
    assert [s['config']['optim']['base_lr'] for s in round2] == [0.1, 0.4]  # 0.2 / 2, 0.2 * 2.
