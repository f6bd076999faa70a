"""What a study's files say about each run: done, running, failed or pending, and its results.

Everything here is read from the run's own workdir, never from a runner's memory, so `status` and
`table` give the same answer from any shell, during the study or after it:

- `summary.json` (written by the trainer when the run ends): done.
- `workdir.lock` (the trainer's, when it has one) or `launch.json` (ours) naming a live process on
  this host, or any process on another host: running.
- `launch.json` recording a failed attempt (exit code, last error line, log path): failed.
- anything else, including an interrupted attempt with checkpoints to resume from: pending.
"""

import dataclasses
import json
import os
import socket
from typing import Any

SUMMARY = 'summary.json'
LAUNCH = 'launch.json'  # Written by jaxconv.study.task around each attempt.
LOCK = 'workdir.lock'  # The trainer's one-writer lock: {"host", "pid", "started"}.
LOG = 'train.log'  # The trainer's output, appended by every attempt.

STATES = ('done', 'running', 'failed', 'pending')


@dataclasses.dataclass(frozen=True)
class RunStatus:
    state: str  # One of STATES.
    detail: str = ''  # One line: where it runs, why it failed, where it would resume.
    exit_code: int | None = None
    error: str = ''  # The last error line of a failed attempt.
    log: str = ''  # Path of the log holding that error.


def read_json(path: str) -> dict | None:
    """The JSON object in `path`, or None when it is missing or half-written."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: str, value: dict) -> None:
    """Writes atomically, so a reader never sees half a file."""
    temporary = f'{path}.tmp{os.getpid()}'
    with open(temporary, 'w') as f:
        json.dump(value, f, indent=2)
    os.replace(temporary, path)


def read_summary(run_dir: str) -> dict | None:
    return read_json(os.path.join(run_dir, SUMMARY))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Alive, but someone else's.
        return True
    return True


def _running_where(holder: dict | None) -> str | None:
    """'pid P on HOST since T' when `holder` names a process that may be running, else None."""
    if not holder or 'pid' not in holder:
        return None
    host = holder.get('host', '')
    if host == socket.gethostname() and not _process_alive(int(holder['pid'])):
        return None
    where = f'pid {holder["pid"]} on {host}'
    if host != socket.gethostname():
        where += ' (another host: not checked from here)'
    return f'{where}, since {holder.get("started", "?")}'


def newest_checkpoint(run_dir: str) -> int | None:
    folder = os.path.join(run_dir, 'checkpoints')
    steps = [int(name) for name in os.listdir(folder) if name.isdigit()] if os.path.isdir(
        folder) else []
    return max(steps, default=None)


def run_status(run_dir: str) -> RunStatus:
    if os.path.exists(os.path.join(run_dir, SUMMARY)):
        return RunStatus('done')
    launch = read_json(os.path.join(run_dir, LAUNCH))
    where = _running_where(read_json(os.path.join(run_dir, LOCK)))
    if where is None and launch and launch.get('state') == 'running':
        where = _running_where(launch)
    if where:
        return RunStatus('running', where)
    if launch and launch.get('state') == 'failed':
        return RunStatus('failed', f'exit code {launch["exit_code"]}: {launch["error"]}',
                         exit_code=launch['exit_code'], error=launch['error'], log=launch['log'])
    step = newest_checkpoint(run_dir)
    return RunStatus('pending', '' if step is None else f'resumes from step {step}')


# ---- Results -------------------------------------------------------------------------------

# Copied as they are from summary.json (jaxconv.train.cost and the loop write them).
SUMMARY_COLUMNS = ('macs', 'params', 'img_per_sec', 'ms_per_step', 'resolution',
                   'depth_multiplier', 'width_multiplier', 'steps', 'epochs', 'wall_seconds')
# The columns every study's table.csv carries, read from each run's summary.json. Top-1 is in %.
RESULT_COLUMNS = ('top1', 'top1_weights', 'test_top1', 'ema_top1', 'minival_top1',
                  'minival_ema_top1', *SUMMARY_COLUMNS)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def results_of(summary: dict) -> dict[str, Any]:
    """A finished run's result columns. `top1` is the number a study compares: the EMA weights'
    test top-1 whenever EMA is on (what the TF references report), else the raw weights'."""
    ema = _percent(summary.get('final_ema_top1'))
    raw = _percent(summary.get('final_top1'))
    return {
        'top1': raw if ema is None else ema,
        'top1_weights': 'raw' if ema is None else 'ema',
        'test_top1': raw,
        'ema_top1': ema,
        'minival_top1': _percent(summary.get('minival_top1')),
        'minival_ema_top1': _percent(summary.get('minival_ema_top1')),
        **{key: summary.get(key) for key in SUMMARY_COLUMNS},
    }
