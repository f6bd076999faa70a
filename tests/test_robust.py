"""Runs that never lose work and never lie (issue 10): README's "What survives what", row by row.

Most tests copy one finished 20-step run (`trained`) and abuse the copy: change its config,
damage or poison its checkpoints, lock it, kill its logger. Real processes only where a real
process is the point (kill -9, a second writer, a W&B process that dies under the CLI).
"""

import dataclasses
import inspect
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import common, lenet5_digits
from jaxconv import config_files, main
from jaxconv.models import create_model, registry
from jaxconv.models.layers import batch_norm
from jaxconv.train import checkpoint, lock, loop, preemption, recipe, steps, writer

pytestmark = pytest.mark.xdist_group('robust')  # One worker builds `trained` once for all.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_DEVICE = jax.devices()[:1]


class _TinyNet(nn.Module):
    """Conv-BN-ReLU-dropout-dense: every kind of state the trainer carries, at 186 parameters."""

    num_classes: int = 10
    bn_group_size: int = 0
    dropout_rate: float = 0.2
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(8, (3, 3), strides=(2, 2), dtype=self.dtype)(x)
        x = batch_norm(train, dtype=self.dtype, group_size=self.bn_group_size)()(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x.mean(axis=(1, 2)))


@pytest.fixture(scope='module')
def tiny_model():
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._REGISTRY, 'robust_tiny', _TinyNet)
        yield 'robust_tiny'


def _config(digits_dir: str) -> ml_collections.ConfigDict:
    config = lenet5_digits.get_config()
    config.dataset.data_dir = digits_dir
    config.wandb.mode = 'disabled'
    config.model.name = 'robust_tiny'
    config.train.steps, config.train.log_every = 20, 5
    config.train.eval_every, config.train.checkpoint_every = 20, 10
    config.optim.warmup_epochs = 0.2  # 4 steps.
    return config


@pytest.fixture
def config(digits_dir, tiny_model):
    return _config(digits_dir)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, digits_dir, tiny_model):
    """A finished 20-step run (checkpoints 10 and 20), and what its loop saw from the inside."""
    workdir = tmp_path_factory.mktemp('trained') / 'run'
    seen = {}
    with pytest.MonkeyPatch.context() as patch:
        original_step, original_write = steps.train_step, writer.MetricWriter.write

        def train_step(state, metrics, batch, root_key, **kwargs):
            seen['image_dtype'] = batch['image'].dtype  # What crossed host -> device.
            return original_step(state, metrics, batch, root_key, **kwargs)

        def write(self, step, split, metrics, **fields):
            try:
                jnp.zeros(())  # An implicit host -> device copy, between steps.
                seen.setdefault('implicit_copy_allowed', True)
            except Exception:
                seen.setdefault('implicit_copy_allowed', False)
            seen.setdefault('threefry_partitionable', jax.config.jax_threefry_partitionable)
            original_write(self, step, split, metrics, **fields)

        patch.setattr(steps, 'train_step', train_step)
        patch.setattr(writer.MetricWriter, 'write', write)
        jax.config.update('jax_threefry_partitionable', False)  # The trainer must turn it on.
        summary = loop.train_and_evaluate(_config(digits_dir), str(workdir), devices=ONE_DEVICE)
    return workdir, summary, seen


@pytest.fixture
def workdir(trained, tmp_path):
    """A copy of the trained run to abuse."""
    copy = tmp_path / 'run'
    shutil.copytree(trained[0], copy)
    return copy


def _snapshot(directory) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under `directory`."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            stat = os.stat(os.path.join(root, name))
            files[os.path.relpath(os.path.join(root, name), directory)] = (stat.st_size,
                                                                          stat.st_mtime_ns)
    return files


def _saved_state(workdir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', str(step),
                                                           'state'))


# ---- Also: the loop's guards and what crosses to the device -------------------------------------

def test_the_whole_loop_runs_under_the_guards_and_sends_uint8(trained):
    _, summary, seen = trained
    assert seen['image_dtype'] == jnp.uint8  # 1 byte per pixel over PCIe, normalised on device.
    assert seen['implicit_copy_allowed'] is False  # The transfer guard covers the whole loop.
    assert seen['threefry_partitionable'] is True
    assert summary['steps'] == 20 and np.isfinite(summary['final_loss'])


# ---- 1, 2: changed configs ---------------------------------------------------------------------

def test_a_changed_config_is_refused_by_default_and_touches_nothing(config, workdir):
    before = _snapshot(workdir)
    config.train.batch_size = 32
    with pytest.raises(loop.ConfigChangedError, match=r'train\.batch_size 64 -> 32.*'
                       r'--allow_config_change') as error:
        loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE)
    assert '\n' not in str(error.value)
    config.train.batch_size, config.train.steps = 64, 10  # A finished 20-step run, asked for 10.
    with pytest.raises(loop.ConfigChangedError, match=r'train\.steps 20 -> 10'):
        loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE)
    with pytest.raises(loop.ConfigChangedError, match='checkpoint is at step 20, past '
                       'train.steps=10'):  # Even when allowed: steps cannot be untrained.
        loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE,
                                allow_config_change=True)
    assert _snapshot(workdir) == before


def test_bookkeeping_keys_may_change_without_permission():
    changes = {'train.log_every': (5, 7), 'wandb.project': ('a', 'b'),
               'dataset.data_dir': ('x', 'y'), 'train.eval_batch_size': (64, 32),
               'optim.base_lr': (0.4, 0.2), 'dataset.shuffle_buffer': (2048, 1024)}
    assert recipe.needs_permission(changes) == {'optim.base_lr': (0.4, 0.2),
                                                'dataset.shuffle_buffer': (2048, 1024)}


@pytest.mark.parametrize('key, value, named', [
    ('train.ema_decay', 0.99, r'train\.ema_decay 0\.0 -> 0\.99'),
    ('optim.grad_clip_norm', 1.0, r'optim\.grad_clip_norm 0\.0 -> 1\.0'),
    ('model.name', 'lenet5', r"model\.name 'robust_tiny' -> 'lenet5'"),
])
def test_a_different_state_structure_is_not_damage(config, workdir, key, value, named):
    """Allowed or not, a checkpoint of another structure stops the run; none is set aside."""
    section, name = key.split('.')
    config[section][name] = value
    before = _snapshot(workdir / 'checkpoints')
    with pytest.raises(loop.ConfigChangedError, match=r'holds another train state .*'
                       f'{named}.*no checkpoint was touched'):
        loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE,
                                allow_config_change=True)
    assert _snapshot(workdir / 'checkpoints') == before
    assert not (workdir / checkpoint.UNREADABLE_DIR).exists()


def test_an_allowed_change_is_recorded_with_its_step_range(config, workdir, monkeypatch):
    starts = []
    original = loop.pipeline.train_batches

    def train_batches(*args, **kwargs):
        starts.append(kwargs['start_example'])
        return original(*args, **kwargs)

    monkeypatch.setattr(loop.pipeline, 'train_batches', train_batches)
    config.train.batch_size, config.train.steps = 32, 30
    summary = loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE,
                                      allow_config_change=True)
    assert starts == [20 * 64]  # The data stream goes on after the 1,280 examples seen.
    assert summary['steps'] == 30 and summary['global_batch_size'] == 32
    assert summary['epochs'] == pytest.approx((20 * 64 + 10 * 32) / 1438)
    first, second = summary['config_segments']
    assert first == {'from_step': 0, 'to_step': 20, 'changed': {}}
    assert (second['from_step'], second['to_step']) == (20, 30)
    assert second['changed']['train.batch_size'] == [64, 32]
    assert second['changed']['train.steps'] == [20, 30]
    assert json.loads((workdir / 'config.until_step_20.json').read_text())['train'][
        'batch_size'] == 64


# ---- 3, 4: the logger --------------------------------------------------------------------------

def _children_named(name: str) -> list[int]:
    """Pids of this process's descendants whose command is `name` (Linux /proc)."""
    parents = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    command, fields = f.read().rsplit(')', 1)
                parents[int(entry)] = (int(fields.split()[1]), command.split('(', 1)[1])
            except (OSError, IndexError, ValueError):
                continue
    mine, found = {os.getpid()}, []
    for _ in range(4):  # Children, grandchildren, ...
        for pid, (parent, command) in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                if command == name:
                    found.append(pid)
    return found


def test_a_dead_wandb_process_is_reported_once_and_local_files_go_on(config, tmp_path, caplog):
    config.wandb.mode = 'offline'
    metric_writer = writer.MetricWriter(str(tmp_path), config)
    metric_writer.write(1, 'train', {'loss': 2.0})
    killed = _children_named('wandb-core')
    assert killed, 'no W&B process to kill'
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    for step in (2, 3):
        metric_writer.write(step, 'train', {'loss': 1.0})
    metric_writer.write_summary({'final_top1': 0.5})
    metric_writer.close()
    failures = [r for r in caplog.records if 'W&B failed' in r.getMessage()]
    assert len(failures) == 1 and metric_writer.run is None
    assert [r['step'] for r in writer.read_metrics(str(tmp_path))] == [1, 2, 3]
    assert json.loads((tmp_path / 'summary.json').read_text()) == {'final_top1': 0.5}


def test_wandb_mode_from_the_environment_beats_the_unset_default(monkeypatch, tmp_path, config,
                                                                 caplog):
    monkeypatch.setenv('WANDB_API_KEY', 'x' * 40)
    monkeypatch.setenv('WANDB_MODE', 'offline')
    assert writer.resolve_wandb_mode(common.get_config().wandb.mode) == 'offline'
    assert writer.resolve_wandb_mode('online') == 'online'  # Set by the user: it wins.
    # Online with a key and no network: offline at once, in one line, instead of a 100 s hang.
    monkeypatch.delenv('WANDB_MODE')
    with socket.socket() as closed:  # A port nobody listens on.
        closed.bind(('127.0.0.1', 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv('WANDB_BASE_URL', f'http://127.0.0.1:{port}')
    config.wandb.mode = None
    metric_writer = writer.MetricWriter(str(tmp_path), config)
    try:
        assert metric_writer.run is not None and metric_writer.run.settings.mode == 'offline'
    finally:
        metric_writer.close()
    assert [r.getMessage() for r in caplog.records if 'unreachable' in r.getMessage()] == [
        'W&B server unreachable: logging offline; upload later with `wandb sync`']


# ---- 5: failed checkpoint writes ---------------------------------------------------------------

def _small_state(seed: int = 0) -> dict:
    return {'w': jax.random.normal(jax.random.key(seed), (4096,)), 'step': jnp.asarray(seed)}


def test_an_unwritable_checkpoint_directory_fails_in_the_save_itself(tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path), keep=2)
    saver.save(1, _small_state(), {})
    saver.wait()
    shutil.rmtree(tmp_path / 'checkpoints')
    (tmp_path / 'checkpoints').write_text('not a directory')  # Root ignores chmod; this it can't.
    with pytest.raises(checkpoint.CheckpointWriteError, match=r'could not write checkpoint step '
                       rf'2 to {tmp_path}/checkpoints \(NotADirectoryError') as error:
        saver.save(2, _small_state(2), {})
    assert '\n' not in str(error.value)
    saver.close()


def test_a_write_that_fails_midway_is_reported_at_the_next_check(tmp_path):
    """A file-size limit fails the array writes as a full disk would (EFBIG for ENOSPC)."""
    saver = checkpoint.Checkpointer(str(tmp_path), keep=2)
    saver.save(1, _small_state(), {})
    saver.wait()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))  # Below the 16 KB array.
        saver.save(2, _small_state(2), {})
        with pytest.raises(checkpoint.CheckpointWriteError, match=r'step 2 to .*File too large'):
            for _ in range(600):  # The loop calls check() after every step; here every 50 ms.
                saver.check()
                time.sleep(0.05)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
        saver.close()


def test_an_unwritable_workdir_fails_before_training(config, tmp_path):
    (tmp_path / 'file').write_text('')
    with pytest.raises(NotADirectoryError):
        loop.train_and_evaluate(config, str(tmp_path / 'file' / 'run'), devices=ONE_DEVICE)


# ---- 6: two writers ----------------------------------------------------------------------------

def _holder(workdir) -> subprocess.Popen:
    """Another process that takes the workdir lock with jaxconv's own code and keeps it."""
    code = textwrap.dedent('''
        import sys, time
        from jaxconv.train.lock import WorkdirLock
        WorkdirLock(sys.argv[1]).acquire()
        print('locked', flush=True)
        time.sleep(120)
    ''')
    process = subprocess.Popen([sys.executable, '-c', code, str(workdir)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == 'locked'
    return process


def test_a_second_writer_exits_at_once_naming_the_holder(config, workdir):
    before = _snapshot(workdir)
    holder = _holder(workdir)
    try:
        with pytest.raises(lock.WorkdirLockedError, match=rf'in use by pid {holder.pid} on host '
                           rf'{socket.gethostname()} since .*delete {workdir}/workdir.lock'):
            loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert {k: v for k, v in _snapshot(workdir).items() if k != 'workdir.lock'} == before
    assert lock.read_holder(str(workdir))['pid'] == holder.pid  # Its lock is left as it was.


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait(timeout=30)
    sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        for holder in ({'host': socket.gethostname(), 'pid': dead.pid, 'started': time.time()},
                       # A live pid that started after the lock was taken: a reused pid.
                       {'host': socket.gethostname(), 'pid': sleeper.pid, 'started': 1000.0}):
            (tmp_path / lock.LOCK_FILE).write_text(json.dumps(holder))
            workdir_lock = lock.WorkdirLock(str(tmp_path))
            workdir_lock.acquire()
            assert lock.read_holder(str(tmp_path))['pid'] == os.getpid()
            workdir_lock.release()
            assert not (tmp_path / lock.LOCK_FILE).exists()
        other_host = {'host': 'elsewhere', 'pid': dead.pid, 'started': time.time()}
        (tmp_path / lock.LOCK_FILE).write_text(json.dumps(other_host))  # Not checkable: held.
        with pytest.raises(lock.WorkdirLockedError, match='on host elsewhere'):
            lock.WorkdirLock(str(tmp_path)).acquire()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
    takeovers = [r for r in caplog.records if 'taking over the stale lock' in r.getMessage()]
    assert len(takeovers) == 2


# ---- 7: a torn metrics line --------------------------------------------------------------------

def test_a_torn_metrics_line_is_cut_on_resume_and_skipped_by_readers(config, tmp_path):
    good = [{'step': 1, 'split': 'train', 'loss': 2.0}, {'step': 2, 'split': 'train', 'loss': 1.5}]
    path = tmp_path / 'metrics.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in good) + '{"step": 3, "spl')
    assert writer.read_metrics(str(tmp_path)) == good
    metric_writer = writer.MetricWriter(str(tmp_path), config)
    metric_writer.write(3, 'train', {'loss': 1.0})
    metric_writer.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)['step'] for line in lines] == [1, 2, 3]


# ---- 8: non-finite state -----------------------------------------------------------------------

def test_a_state_with_inf_is_never_saved(config, workdir, monkeypatch):
    """Inf momentum leaves loss and gradients finite for a step; the save still refuses it."""
    original = steps.train_step

    def poisoned(state, metrics, batch, root_key, **kwargs):
        state, metrics = original(state, metrics, batch, root_key, **kwargs)
        inf_at_25 = jnp.where(state.step >= 25, jnp.inf, 1.0)
        return state.replace(opt_state=jax.tree.map(lambda x: x * inf_at_25 if jnp.issubdtype(
            x.dtype, jnp.floating) else x, state.opt_state)), metrics

    monkeypatch.setattr(steps, 'train_step', poisoned)
    config.train.steps, config.train.checkpoint_every = 30, 5
    summary_before = (workdir / 'summary.json').read_text()
    with pytest.raises(checkpoint.NonFiniteStateError, match=r'at step 25 holds NaN/inf .*not '
                       r'saved \(newest checkpoint: step 20\)'):
        loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE,
                                allow_config_change=True)
    assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == ['10', '20']
    assert (workdir / 'summary.json').read_text() == summary_before


def test_an_unexpected_error_saves_a_checkpoint_first(config, workdir, monkeypatch):
    """metrics.jsonl's disk fills at step 25: the five steps since checkpoint 20 are kept."""
    original = writer.MetricWriter.write

    def write(self, step, split, metrics, **fields):
        if step == 25:
            raise OSError(28, 'No space left on device')
        original(self, step, split, metrics, **fields)

    monkeypatch.setattr(writer.MetricWriter, 'write', write)
    config.train.steps = 30
    with pytest.raises(OSError, match='No space left on device'):
        loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE,
                                allow_config_change=True)
    assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == ['10', '20', '25']
    assert int(_saved_state(workdir, 25)['step']) == 25


def test_a_checkpoint_that_restores_nan_is_set_aside(config, workdir, trained):
    """Bytes that still decode but hold NaN: set aside, the run goes on from step 10."""
    saved = ocp.CheckpointManager(str(workdir / 'checkpoints'))
    state, record = (_saved_state(workdir, 20),
                     json.loads((workdir / 'checkpoints/20/record/metadata').read_text()))
    state['params']['Dense_0']['kernel'] = np.full_like(state['params']['Dense_0']['kernel'],
                                                        np.nan)
    saved.delete(20)
    saved.save(20, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           record=ocp.args.JsonSave(record)))
    saved.wait_until_finished()
    saved.close()
    summary = loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE)
    assert (workdir / checkpoint.UNREADABLE_DIR / '20').is_dir()
    # Steps 11 to 20 again from checkpoint 10: the same trajectory, the same result.
    assert summary['final_top1'] == trained[1]['final_top1']
    assert summary['final_loss'] == pytest.approx(trained[1]['final_loss'], rel=1e-5)


def test_a_nan_result_never_overwrites_a_good_summary(config, tmp_path):
    metric_writer = writer.MetricWriter(str(tmp_path), config)
    metric_writer.write_summary({'final_top1': 0.9, 'best_top1': 0.9})
    with pytest.raises(writer.NonFiniteResultError, match=r'NaN/inf \(final_top1\)'):
        metric_writer.write_summary({'final_top1': float('nan'), 'best_top1': 0.9})
    metric_writer.close()
    assert json.loads((tmp_path / 'summary.json').read_text())['final_top1'] == 0.9


# ---- 9, 10: validation before anything is written ----------------------------------------------

@pytest.mark.parametrize('key, value, message', [
    ('train.keep_checkpoints', 0, r'train\.keep_checkpoints=0 must be at least 1'),
    ('train.batch_size', 0, r'train\.batch_size=0 must be a positive integer'),
    ('train.batch_size', -64, r'train\.batch_size=-64 must be a positive integer'),
    ('train.label_smoothing', 1.0, r'train\.label_smoothing=1\.0 must be in \[0, 1\)'),
    ('train.label_smoothing', -0.1, r'train\.label_smoothing=-0\.1 must be in \[0, 1\)'),
    ('train.ema_decay', 1.0, r'train\.ema_decay=1\.0 must be in \[0, 1\)'),
    ('optim.base_lr', float('inf'), r'optim\.base_lr=inf must be a finite number'),
    ('optim.base_lr', float('nan'), r'optim\.base_lr=nan must be a finite number'),
    ('model.kwargs.dropout_rate', 1.0, r'model\.kwargs\.dropout_rate=1\.0 must be in \[0, 1\)'),
    ('model.kwargs.dropout_rate', -0.5, r'model\.kwargs\.dropout_rate=-0\.5 must be in'),
    ('model.kwargs.widht', 2, r"model 'robust_tiny' has no field 'widht'; valid model\.kwargs: "
                              r'bn_group_size, dropout_rate$'),
])
def test_a_bad_value_fails_in_one_line_before_anything_is_written(config, tmp_path, key, value,
                                                                  message):
    *sections, name = key.split('.')
    node = config
    for section in sections:
        node = node[section]
    node[name] = value
    workdir = tmp_path / 'never'
    with pytest.raises(ValueError, match=message) as error:
        loop.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE)
    assert '\n' not in str(error.value)
    assert not workdir.exists()


def test_a_config_file_without_a_config_says_so(tmp_path):
    (tmp_path / 'none.py').write_text('def get_config(arg=None):\n    config = {}\n')
    (tmp_path / 'nothing.py').write_text('SEED = 0\n')
    for name, message in (('none.py', 'returned NoneType, not an ml_collections.ConfigDict'),
                          ('nothing.py', 'has no get_config(arg) function')):
        with pytest.raises(ValueError, match=re.escape(message)):
            config_files.load(str(tmp_path / name))
        problem = main._config_file_problem(['prog', f'--config={tmp_path / name}'])
        assert message in problem and '\n' not in problem


# ---- 11: preemption on many hosts --------------------------------------------------------------

def _simulate_processes(signal_steps: list[int | None], every: int) -> list[int | None]:
    """Runs one StopAgreement per simulated process (a thread) exchanging flags through a
    barrier, as the all-gather does across hosts; returns the step each one stopped at."""
    flags, stopped = [False] * len(signal_steps), [None] * len(signal_steps)
    barrier = threading.Barrier(len(signal_steps), timeout=30)

    def run(index: int) -> None:
        def exchange(flag: bool) -> bool:
            flags[index] = flag
            barrier.wait()
            agreed = any(flags)
            barrier.wait()  # Nobody overwrites a flag before everyone has read them all.
            return agreed

        agreement = preemption.StopAgreement(exchange, every=every)
        for step in range(1, 200):
            signalled = signal_steps[index] is not None and step >= signal_steps[index]
            if agreement.should_stop(step, signalled):
                stopped[index] = step
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(signal_steps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return stopped


def test_processes_signalled_at_different_steps_stop_at_the_same_step():
    # SIGTERM reaches host 0 at step 13, host 2 at step 27, host 1 never: all save step 20.
    assert _simulate_processes([13, None, 27], every=10) == [20, 20, 20]
    assert _simulate_processes([None, 40, None, None], every=10) == [40, 40, 40, 40]
    # One process alone looks at its flag after every step, with no collective.
    alone = preemption.StopAgreement()
    assert (alone.every, alone.should_stop(7, False), alone.should_stop(8, True)) == (1, False,
                                                                                     True)
    assert preemption.any_process(True) and not preemption.any_process(False)


# ---- 12: model.kwargs from the command line -----------------------------------------------------

def test_any_model_field_can_be_set_from_the_command_line(digits_config):
    argv = ['prog', '--config=x.py', '--config.model.kwargs.width_multiplier=0.5',
            '--config.model.kwargs.bn_group_size', '16']
    rest, kwargs = main.split_model_kwargs(argv)
    assert rest == ['prog', '--config=x.py']
    digits_config.model.name = 'mobilenet_v2'
    digits_config.lock()
    main.apply_model_kwargs(digits_config, kwargs)
    assert digits_config.model.kwargs.to_dict() == {'width_multiplier': 0.5, 'bn_group_size': 16}
    model = create_model('mobilenet_v2', **digits_config.model.kwargs)
    assert (model.width_multiplier, model.bn_group_size) == (0.5, 16)

    fields = {f.name for f in dataclasses.fields(type(model))} - {'parent', 'name', 'dtype',
                                                                   'num_classes'}
    for key, text, message in (
            ('bn_group_size', '0.5', 'model.kwargs.bn_group_size=0.5 must be an integer '
                                     '(default 0)'),
            ('width_multiplier', 'wide', 'model.kwargs.width_multiplier=wide must be a number '
                                         '(default 1.0)'),
            ('widht_multiplier', '0.5', "model 'mobilenet_v2' has no field 'widht_multiplier'; "
                                        f'valid model.kwargs: {", ".join(sorted(fields))}'),
            ('dtype', 'bfloat16', 'model.kwargs.dtype is set by the trainer; set '
                                  'model.compute_dtype')):
        with pytest.raises(recipe.ConfigError) as error:
            main.apply_model_kwargs(digits_config, [(key, text)])
        assert str(error.value) == message


# ---- kill -9 and a dying W&B under the real command line ---------------------------------------

def _cli(code: str, args: list[str], tmp_path, **env) -> tuple[int, str]:
    """(exit code, stderr) of `python -m jaxconv.main ARGS` exactly (its __main__ block
    included), run after `code`; killed if it outlives the timeout."""
    # WANDB_SERVICE: a W&B process that this test process started must not be shared.
    environ = {k: v for k, v in os.environ.items()
               if k not in ('XLA_FLAGS', 'WANDB_MODE', 'WANDB_API_KEY', 'WANDB_SERVICE')}
    environ.update(HOME=str(tmp_path), **env)
    program = code + textwrap.dedent(f'''
        import runpy, sys
        sys.argv = ['jaxconv.main', *{args!r}]
        runpy.run_module('jaxconv.main', run_name='__main__')
    ''')
    process = subprocess.Popen([sys.executable, '-c', program], cwd=REPO, env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return process.returncode, stderr


def _lenet_args(workdir, digits_dir, *extra) -> list[str]:
    return ['--config=configs/lenet5_digits.py', f'--workdir={workdir}',
            f'--config.dataset.data_dir={digits_dir}', '--config.train.steps=30',
            '--config.train.log_every=5', '--config.train.checkpoint_every=10',
            '--config.train.eval_every=30', '--config.optim.warmup_epochs=0.2', *extra]


def test_the_cli_survives_its_wandb_process_dying(tmp_path, digits_dir):
    """The W&B process is killed at step 10: one line, training and local files go on."""
    kill_wandb = textwrap.dedent('''
        import os, signal
        from jaxconv.train import writer
        original = writer.MetricWriter.write
        def write(self, step, split, metrics, **fields):
            if step == 10 and split == 'train':
                for entry in os.listdir('/proc'):
                    try:
                        stat = open(f'/proc/{entry}/stat').read()
                    except OSError:
                        continue
                    if '(wandb-core)' in stat and int(stat.rsplit(')', 1)[1].split()[1]) == (
                            os.getpid()):
                        os.kill(int(entry), signal.SIGKILL)
            original(self, step, split, metrics, **fields)
        writer.MetricWriter.write = write
    ''')
    workdir = tmp_path / 'run'
    returncode, stderr = _cli(kill_wandb, _lenet_args(workdir, digits_dir,
                                                      '--config.model.kwargs.activation=relu'),
                              tmp_path, WANDB_MODE='offline')
    assert returncode == 0, stderr[-3000:]
    assert len([line for line in stderr.splitlines() if 'W&B failed' in line]) == 1, stderr
    assert 'Traceback' not in stderr
    records = writer.read_metrics(str(workdir))
    assert [r['step'] for r in records if r['split'] == 'train'] == [5, 10, 15, 20, 25, 30]
    assert json.loads((workdir / 'summary.json').read_text())['steps'] == 30
    # model.kwargs from the command line reached the model (ReLU is not LeNet-5's default).
    assert json.loads((workdir / 'config.json').read_text())['model']['kwargs'] == {
        'activation': 'relu'}


def test_kill_9_mid_save_then_resume(tmp_path, digits_dir, trained, caplog):
    """SIGKILL the moment the step-20 save starts; re-running resumes (taking over the stale
    lock, cutting a torn metrics line) and ends where the uninterrupted `trained` run ended."""
    die_mid_save = textwrap.dedent('''
        import os, signal
        import flax.linen as nn
        import jax.numpy as jnp
        from jaxconv.models import registry
        from jaxconv.models.layers import batch_norm
        from jaxconv.train import checkpoint
    ''') + textwrap.dedent(inspect.getsource(_TinyNet)) + textwrap.dedent('''
        registry.register_model(_TinyNet, name='robust_tiny')
        original = checkpoint.Checkpointer.save
        def save(self, step, state, record):
            original(self, step, state, record)
            if step == 20:
                os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.Checkpointer.save = save
    ''')
    workdir = tmp_path / 'run'
    args = ['--config=configs/lenet5_digits.py', f'--workdir={workdir}',
            f'--config.dataset.data_dir={digits_dir}', '--config.model.name=robust_tiny',
            '--config.train.steps=20', '--config.train.log_every=5',
            '--config.train.eval_every=20', '--config.train.checkpoint_every=10',
            '--config.optim.warmup_epochs=0.2', '--config.wandb.mode=disabled']
    returncode, stderr = _cli(die_mid_save, args, tmp_path)
    assert returncode == -signal.SIGKILL, stderr[-3000:]
    holder = lock.read_holder(str(workdir))  # Left behind by the dead process.
    assert holder['host'] == socket.gethostname() and not lock.holder_is_alive(holder)
    with open(workdir / 'metrics.jsonl', 'a') as f:
        f.write('{"step": 21, "split": "tr')  # As a crash in the middle of a write leaves it.

    resumed = loop.train_and_evaluate(_config(digits_dir), str(workdir), devices=ONE_DEVICE)
    messages = [r.getMessage() for r in caplog.records]
    assert any('taking over the stale lock' in m for m in messages)
    assert any(m.startswith('resuming from the checkpoint at step') for m in messages)
    straight = trained[1]
    assert resumed['steps'] == 20 and resumed['final_top1'] == straight['final_top1']
    assert resumed['final_loss'] == pytest.approx(straight['final_loss'], rel=1e-5)
    assert [r['step'] for r in writer.read_metrics(str(workdir)) if r['split'] == 'train'] == [
        5, 10, 15, 20]
