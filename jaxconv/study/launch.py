"""Where a study's runs train: on this machine, or on a Slurm cluster through submitit; or, for
clusters and agents that should do the dispatching themselves, an sbatch script or a W&B sweep.

Each run is one `jaxconv.study.task` attempt (skip if done, train, record how it ended), whatever
the launcher, so a run behaves the same locally, in a job array and under a W&B agent.
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import submitit

from jaxconv.study import records, task
from jaxconv.study.spec import Run

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass(frozen=True)
class Planned:
    run: Run
    task: task.Task


def plan(runs: Sequence[Run], workdir: str, group: str, extra: Sequence[str]) -> list[Planned]:
    """Each run's trainer command: its config and overrides, its workdir, the study's W&B group
    and a W&B name, then the extra overrides given after `--` (so those win). A probe run's
    command is `jaxconv.linear_probe` of its trained run, writing into the probe's own dir."""
    env = {'PYTHONUNBUFFERED': '1'}  # Progress bars reach the log as they are drawn.
    if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
        # Runs of a study share most XLA programs (init and eval depend on the architecture only),
        # so one persistent cache saves each later run those compiles.
        env['JAX_COMPILATION_CACHE_DIR'] = os.path.abspath(os.path.join(workdir, 'jax_cache'))
    planned = []
    for run in runs:
        run_dir = os.path.join(workdir, run.name)
        if run.probe_of is not None:  # No training, so no W&B run and no config overrides.
            command = [sys.executable, '-m', 'jaxconv.linear_probe', *run.probe_args(),
                       f'--out={run_dir}']
        else:
            command = [sys.executable, '-m', 'jaxconv.main', *run.trainer_args(),
                       f'--workdir={run_dir}', f'--config.wandb.group={group}',
                       f'--config.wandb.name={group}/{run.name}', *extra]
        planned.append(Planned(run, task.Task(run_dir, command, os.getcwd(), env)))
    return planned


# ---- This machine ------------------------------------------------------------------------------

def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists.

    Read without importing JAX, which would claim the GPUs' memory for the runner itself.
    """
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible is not None:
        return [gpu for gpu in visible.split(',') if gpu.strip() and gpu.strip() != '-1']
    if shutil.which('nvidia-smi') is None:
        return []
    try:
        listed = subprocess.run(['nvidia-smi', '--query-gpu=index', '--format=csv,noheader'],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def gpu_slots(gpus: Sequence[str], gpus_per_run: int) -> list[str | None]:
    """The CUDA_VISIBLE_DEVICES of each concurrent run: G GPUs give G // k runs of k GPUs.

    Without GPUs, or without --gpus-per-run, one run at a time sees everything (None).
    """
    if not gpus or gpus_per_run <= 0:
        return [None]
    if gpus_per_run > len(gpus):
        raise ValueError(f'--gpus-per-run={gpus_per_run} but this machine shows {len(gpus)} '
                         f'GPU(s) ({",".join(gpus)}); lower it')
    return [','.join(gpus[i:i + gpus_per_run])
            for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]


class LocalLauncher:
    """Trains runs on this machine: one at a time, or G // k at once pinned to their GPUs.

    SIGTERM or SIGINT stops the study: running trainers get SIGTERM (each saves a checkpoint), no
    new run starts, and `interrupted` is set; `run` again continues with what is missing.
    """

    def __init__(self, slots: Sequence[str | None] = (None,)):
        self.slots = list(slots)
        self.interrupted: int | None = None  # The signal that stopped the study.
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.RLock()  # Also taken by the signal handler, in whichever frame.

    def _started(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.add(process)
            stopping = self.interrupted is not None
        if stopping:  # The signal came while this one was starting.
            process.send_signal(signal.SIGTERM)

    def _stop(self, signum, frame) -> None:
        del frame
        with self._lock:
            self.interrupted = signum
            processes = list(self._processes)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    @contextlib.contextmanager
    def _signals(self):
        previous = {signum: signal.signal(signum, self._stop) for signum in _STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _attempt(self, planned: Planned, slot: str | None, echo: bool) -> str:
        if self.interrupted is not None:
            return 'not started'
        env = dict(planned.task.env)
        if slot is not None:
            env['CUDA_VISIBLE_DEVICES'] = slot
        where = f' on GPU {slot}' if slot is not None else ''
        print(f'== {planned.run.name}: training{where} (log: '
              f'{os.path.join(planned.task.run_dir, records.LOG)})', flush=True)
        ending = task.execute(dataclasses.replace(planned.task, env=env), echo=echo,
                              on_start=self._started)
        print(f'== {planned.run.name}: {ending}', flush=True)
        return ending

    def launch(self, planned: Sequence[Planned]) -> dict[str, str]:
        """Trains `planned` and returns each run's ending ('finished', 'failed', ...)."""
        endings = {}
        with self._signals():
            if len(self.slots) == 1:  # In this thread, its output shown as it comes.
                for item in planned:
                    endings[item.run.name] = self._attempt(item, self.slots[0], echo=True)
                return endings
            free = queue.Queue()
            for slot in self.slots:
                free.put(slot)

            def attempt_on_a_free_slot(item: Planned) -> str:
                slot = free.get()
                try:
                    return self._attempt(item, slot, echo=False)  # Logs only: runs overlap.
                finally:
                    free.put(slot)

            with concurrent.futures.ThreadPoolExecutor(len(self.slots)) as pool:
                futures = {pool.submit(attempt_on_a_free_slot, item): item for item in planned}
                pending = set(futures)
                while pending:  # Short waits, so this thread stays free to take signals.
                    _, pending = concurrent.futures.wait(pending, timeout=0.5)
                for future, item in futures.items():
                    endings[item.run.name] = future.result()
        return endings


# ---- Slurm through submitit --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    partition: str = ''
    time_min: int = 24 * 60  # Wall-clock limit of each array task.
    gpus_per_node: int = 0
    nodes: int = 1  # Per run; the trainer calls jax.distributed.initialize() from Slurm's env.
    cpus_per_task: int = 0  # 0: the cluster's default.
    max_parallel: int = 0  # Array tasks running at once; 0: no cap.
    cluster: str = 'slurm'  # submitit's executor; 'local' runs the same path on this machine.


class SlurmTask(submitit.helpers.Checkpointable):
    """One array task. At the time limit or on preemption submitit calls `checkpoint`: the trainer
    gets SIGTERM (it saves), the attempt is recorded as interrupted, and the same task is
    requeued, so it resumes from that checkpoint."""

    def __init__(self, one: task.Task):
        self.task = one
        self._process = None

    def __getstate__(self):  # The live process handle stays on the node.
        return {'task': self.task, '_process': None}

    def _started(self, process: subprocess.Popen) -> None:
        self._process = process

    def __call__(self) -> str:
        return task.execute(self.task, on_start=self._started)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        del args, kwargs
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=60)
        task.record_interrupted(self.task.run_dir)
        return submitit.helpers.DelayedSubmission(SlurmTask(self.task))


class SlurmLauncher:
    """Submits the runs as one Slurm job array and waits for them, printing each ending."""

    def __init__(self, workdir: str, group: str, options: SlurmOptions):
        if options.cluster == 'slurm' and shutil.which('sbatch') is None:
            raise ValueError('--launcher=slurm: no sbatch on this machine; run from a Slurm login '
                             'node, or use --launcher=local, or --emit=sbatch to write a script')
        self.workdir, self.group, self.options = workdir, group, options
        self.interrupted: int | None = None

    def _executor(self) -> submitit.AutoExecutor:
        options = self.options
        executor = submitit.AutoExecutor(folder=os.path.join(self.workdir, 'slurm', '%j'),
                                         cluster=options.cluster)
        parameters = dict(name=self.group, timeout_min=options.time_min, nodes=options.nodes,
                          tasks_per_node=1, gpus_per_node=options.gpus_per_node)
        if options.cpus_per_task:
            parameters['cpus_per_task'] = options.cpus_per_task
        if options.partition:
            parameters['slurm_partition'] = options.partition
        if options.max_parallel:
            parameters['slurm_array_parallelism'] = options.max_parallel
        executor.update_parameters(**parameters)
        return executor

    def launch(self, planned: Sequence[Planned]) -> dict[str, str]:
        executor = self._executor()
        with executor.batch():
            jobs = [executor.submit(SlurmTask(item.task)) for item in planned]
        names = {job.job_id: item.run.name for job, item in zip(jobs, planned, strict=True)}
        print(f'== submitted {len(jobs)} run(s) as job(s) {", ".join(names)}; logs in '
              f'{os.path.join(self.workdir, "slurm")} and each run\'s {records.LOG}', flush=True)
        endings, waiting = {}, list(jobs)
        try:
            while waiting:
                for job in [job for job in waiting if job.done()]:
                    waiting.remove(job)
                    try:
                        endings[names[job.job_id]] = job.result()
                    except Exception as error:  # noqa: BLE001  (submitit wraps any job failure)
                        endings[names[job.job_id]] = 'failed'
                        print(f'== {names[job.job_id]}: job failed: '
                              f'{str(error).strip().splitlines()[-1][:300]}', flush=True)
                        continue
                    print(f'== {names[job.job_id]}: {endings[names[job.job_id]]}', flush=True)
                time.sleep(2)
        except KeyboardInterrupt:
            self.interrupted = signal.SIGINT
            print('== stopped waiting; the jobs keep running. `python -m jaxconv.study status` '
                  'follows them, `run` again collects the table.', flush=True)
        return endings


# ---- Scripts for others to dispatch ------------------------------------------------------------

def _task_line(item: Planned) -> str:
    return shlex.join([sys.executable, '-m', 'jaxconv.study.task', item.task.run_dir, '--',
                       *item.task.command])


def emit_sbatch(planned: Sequence[Planned], workdir: str, group: str, study_spec: str,
                options: SlurmOptions) -> str:
    """Writes `DIR/sbatch/commands.txt` (one run per line) and `DIR/sbatch/study.sbatch`, an
    array job whose task i runs line i + 1; returns the script's path."""
    folder = os.path.join(workdir, 'sbatch')
    os.makedirs(folder, exist_ok=True)
    commands = os.path.abspath(os.path.join(folder, 'commands.txt'))
    with open(commands, 'w') as f:
        f.write(''.join(f'{_task_line(item)}\n' for item in planned))
    cap = f'%{options.max_parallel}' if options.max_parallel else ''
    directives = [
        f'--job-name={group}', f'--array=0-{len(planned) - 1}{cap}', f'--nodes={options.nodes}',
        '--ntasks-per-node=1', f'--time={options.time_min}',
        # The trainer saves a checkpoint on SIGTERM; give it two minutes before the time limit.
        '--signal=TERM@120', '--open-mode=append',
        f'--output={os.path.abspath(os.path.join(folder, "%A_%a.out"))}',
        *([f'--gpus-per-node={options.gpus_per_node}'] if options.gpus_per_node else []),
        *([f'--cpus-per-task={options.cpus_per_task}'] if options.cpus_per_task else []),
        *([f'--partition={options.partition}'] if options.partition else []),
    ]
    script = os.path.join(folder, 'study.sbatch')
    with open(script, 'w') as f:
        f.write('#!/bin/bash\n')
        f.write(f'# {study_spec}: {len(planned)} run(s), one array task each, written by\n'
                f'# python -m jaxconv.study run {study_spec} --workdir={workdir} --emit=sbatch\n'
                f'# Submit: sbatch {script}   (a finished run is skipped, so resubmitting '
                'trains only what is missing)\n')
        f.write(''.join(f'#SBATCH {directive}\n' for directive in directives))
        f.write('set -euo pipefail\n')
        f.write(f'cd {shlex.quote(os.getcwd())}\n')
        f.write(f'command=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(commands)})\n')
        # One srun task per node; a multi-node run's processes find each other through Slurm's env.
        f.write('srun bash -c "$command"\n')
    return script


def emit_wandb_sweep(planned: Sequence[Planned], workdir: str, group: str, study_spec: str,
                     extra: Sequence[str]) -> str:
    """Writes `DIR/wandb_sweep.yaml`: a grid over the run names whose command is this CLI with the
    agent's `${args}` (`--run=NAME`), so each agent job trains one run into the study's workdir."""
    import yaml  # A dependency of wandb.

    sweep = {
        'name': group,
        'program': 'jaxconv/study/__main__.py',
        'method': 'grid',
        'parameters': {'run': {'values': [item.run.name for item in planned]}},
        'command': ['${env}', sys.executable, '-m', 'jaxconv.study', 'run', study_spec,
                    f'--workdir={workdir}', '${args}', *(['--', *extra] if extra else [])],
    }
    path = os.path.join(workdir, 'wandb_sweep.yaml')
    os.makedirs(workdir, exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'# W&B sweep of {study_spec}: each agent job trains one run.\n'
                f'#   wandb sweep {path}\n#   wandb agent ENTITY/PROJECT/SWEEP_ID   '
                f'(from the directory {os.getcwd()})\n')
        yaml.safe_dump(sweep, f, sort_keys=False)
    return path
