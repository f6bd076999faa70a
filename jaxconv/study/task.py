"""One attempt at one run, the same code under every launcher: skip it if it has finished, else
train it in a child process, keep its output in `<run>/train.log` and record how it ended in
`<run>/launch.json` (state, exit code, last error line, log path).

  python -m jaxconv.study.task RUN_DIR -- python -m jaxconv.main --config=... --workdir=RUN_DIR

is how `--emit=sbatch` calls it; the local and Slurm launchers call `execute` directly.
"""

import dataclasses
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence

from jaxconv.study import records

# Exit codes that mean "stopped by a signal, checkpoint saved": the trainer exits 128 + signum,
# a process killed before it could handle the signal reports -signum.
_INTERRUPTS = {signal.SIGTERM, signal.SIGINT}
_ERROR_LINE = re.compile(r'^(jaxconv: error: .*|[\w.]*(Error|Exception|Interrupt)\b.*)$')


@dataclasses.dataclass(frozen=True)
class Task:
    """What a launcher hands to `execute`: plain data, so submitit can pickle it."""

    run_dir: str
    command: Sequence[str]
    cwd: str  # The directory the study was started from; config paths are relative to it.
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # Added to the environment.


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def last_error_line(log_path: str, start: int = 0) -> str:
    """The most telling line of the log after byte `start`: the trainer's one-line error, else a
    traceback's last line, else the last line."""
    try:
        with open(log_path, 'rb') as f:
            f.seek(start)
            text = f.read().decode('utf-8', errors='replace')
    except FileNotFoundError:
        return ''
    # Progress bars redraw with carriage returns; keep what each line finally showed.
    lines = [line.rsplit('\r', 1)[-1].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    return (errors or lines or [''])[-1][:500]


def _ending(code: int) -> str:
    signum = code - 128 if code > 128 else -code
    if code != 0 and signum in _INTERRUPTS:
        return 'interrupted'
    return 'finished' if code == 0 else 'failed'


def _process_id() -> int:
    """In a multi-node Slurm run every node runs the task; process 0 records it."""
    return int(os.environ.get('SLURM_PROCID', '0'))


def _is_lead_process() -> bool:
    return _process_id() == 0


def execute(task: Task, *, echo: bool = True,
            on_start: Callable[[subprocess.Popen], None] | None = None) -> str:
    """Runs one attempt; returns 'done' (skipped), 'finished', 'failed' or 'interrupted'."""
    if records.read_summary(task.run_dir) is not None:
        return 'done'
    lead = _is_lead_process()
    os.makedirs(task.run_dir, exist_ok=True)
    launch_path = os.path.join(task.run_dir, records.LAUNCH)
    # The other nodes of a multi-node run keep their own logs beside the lead's.
    log_path = os.path.join(task.run_dir, records.LOG if lead else f'train.{_process_id()}.log')
    previous = records.read_json(launch_path) or {}
    record = {'state': 'running', 'attempt': previous.get('attempt', 0) + 1,
              'host': socket.gethostname(), 'started': _now(), 'log': log_path,
              'command': list(task.command)}
    with open(log_path, 'ab') as log:
        log_start = log.tell()
        log.write(f'== attempt {record["attempt"]} on {record["host"]} at {record["started"]}: '
                  f'{" ".join(task.command)}\n'.encode())
        log.flush()
        # WANDB_SERVICE points at the runner's own W&B process (set once it logged a table);
        # a trainer that inherited it would log through that process and die with it.
        environ = {k: v for k, v in os.environ.items() if k != 'WANDB_SERVICE'}
        process = subprocess.Popen(task.command, cwd=task.cwd, env={**environ, **task.env},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if on_start is not None:
            on_start(process)
        if lead:
            records.write_json(launch_path, {**record, 'pid': process.pid})
        # Tee in chunks, not lines, so progress bars (carriage returns) show as they happen.
        while chunk := os.read(process.stdout.fileno(), 1 << 16):
            log.write(chunk)
            log.flush()
            if echo:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        code = process.wait()
    ending = _ending(code)
    if ending == 'finished' and records.read_summary(task.run_dir) is None and lead:
        ending = 'failed'  # Exit 0 without a summary is not a result.
    if lead:
        error = last_error_line(log_path, log_start) if ending == 'failed' else ''
        if ending == 'failed' and code < 0:  # SIGKILL is what the out-of-memory killer sends.
            error = f'killed by {signal.Signals(-code).name}; last line: {error}'
        record.update(state=ending, pid=process.pid, ended=_now(), exit_code=code, error=error)
        records.write_json(launch_path, record)
    return ending


def record_interrupted(run_dir: str) -> None:
    """Marks a running attempt interrupted (a scheduler is about to stop this job)."""
    path = os.path.join(run_dir, records.LAUNCH)
    record = records.read_json(path)
    if _is_lead_process() and record and record.get('state') == 'running':
        records.write_json(path, {**record, 'state': 'interrupted', 'ended': _now()})


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != '--':
        print('usage: python -m jaxconv.study.task RUN_DIR -- COMMAND...', file=sys.stderr)
        return 2
    children = []

    def forward(signum, frame):  # Slurm signals the whole step; a shell's kill only this process.
        del frame
        for child in children:
            child.send_signal(signum)

    for signum in _INTERRUPTS:
        signal.signal(signum, forward)
    ending = execute(Task(argv[0], argv[2:], os.getcwd()), on_start=children.append)
    return {'done': 0, 'finished': 0, 'interrupted': 128 + signal.SIGTERM}.get(ending, 1)


if __name__ == '__main__':
    sys.exit(main())
