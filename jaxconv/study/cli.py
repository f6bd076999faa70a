"""python -m jaxconv.study run|status|table|plot experiments/FILE.py[:ARG] --workdir=DIR [...]
[-- --config.KEY=VALUE ...]

  run     train every run that has not finished (failed ones are retried), then write the table
          and figures; SIGTERM or Ctrl-C stops it cleanly and `run` again continues.
  status  one line per run: done / running / failed / pending.
  table   write DIR/table.md and DIR/table.csv from the runs' summary.json, and log a W&B Table.
  plot    write the study's figures (PNG, with their data as CSV) into DIR.

Overrides after `--` apply to every run (e.g. `-- --config.dataset.data_dir=/data/tfds`).
Exit status of `run`: 0 when every selected run is done, 1 when one failed, 128 + signal when
stopped by one, 2 for bad input.
"""

import argparse
import fnmatch
import os
import sys
from collections.abc import Sequence

from jaxconv.study import launch, plots, records, spec, table

COMMANDS = ('run', 'status', 'table', 'plot')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m jaxconv.study', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('command', choices=COMMANDS)
    parser.add_argument('study', help='study file, experiments/FILE.py[:ARG]')
    parser.add_argument('--workdir', required=True, help='study directory; run NAME trains in '
                        'DIR/NAME')
    parser.add_argument('--run', action='append', default=[], metavar='NAME',
                        help='only runs whose name matches this glob (repeatable)')
    parser.add_argument('--group', default='', help='W&B group; default: the workdir\'s name')
    parser.add_argument('--launcher', choices=('local', 'slurm'), default='local')
    parser.add_argument('--emit', choices=('sbatch', 'wandb'),
                        help='write a script for others to dispatch instead of training')
    local = parser.add_argument_group('local launcher')
    local.add_argument('--gpus-per-run', type=int, default=0, help='k: with G GPUs, G // k runs '
                       'at once, each pinned with CUDA_VISIBLE_DEVICES; 0: one run sees them all')
    slurm = parser.add_argument_group('slurm launcher and --emit=sbatch')
    slurm.add_argument('--partition', default='')
    slurm.add_argument('--time-min', type=int, default=24 * 60, help='per array task')
    slurm.add_argument('--gpus-per-node', type=int, default=0)
    slurm.add_argument('--nodes', type=int, default=1, help='per run (multi-host training)')
    slurm.add_argument('--cpus-per-task', type=int, default=0)
    slurm.add_argument('--max-parallel', type=int, default=0, help='array tasks at once; 0: all')
    slurm.add_argument('--submitit-cluster', choices=('slurm', 'local'), default='slurm',
                       help="'local': submitit's local executor, the same code path on this "
                       'machine (for testing)')
    return parser


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The study CLI's own flags, and the trainer overrides after `--`."""
    argv = list(argv)
    own, extra = (argv[:argv.index('--')], argv[argv.index('--') + 1:]) if '--' in argv else (
        argv, [])
    args = _parser().parse_args(own)
    bad = [item for item in extra if not item.startswith('--config.')]
    if bad:
        raise ValueError(f'overrides after -- must look like --config.KEY=VALUE, got {bad[0]!r}')
    return args, extra


def _selected(study: spec.Study, patterns: Sequence[str]) -> list[spec.Run]:
    if not patterns:
        return list(study.runs)
    runs = [run for run in study.runs if any(fnmatch.fnmatchcase(run.name, p) for p in patterns)]
    if not runs:
        raise ValueError(f'--run {" ".join(patterns)} matches no run; runs: '
                         f'{", ".join(run.name for run in study.runs)}')
    return runs


def _status(study: spec.Study, workdir: str, patterns: Sequence[str]) -> int:
    runs = _selected(study, patterns)
    width = max(len(run.name) for run in runs)
    counts = dict.fromkeys(records.STATES, 0)
    for run in runs:
        status = records.run_status(os.path.join(workdir, run.name))
        counts[status.state] += 1
        detail = f'  {status.detail}' if status.detail else ''
        if status.state == 'failed':
            detail += f'  (log: {status.log})'
        print(f'{run.name:<{width}}  {status.state:<7}{detail}')
    print(', '.join(f'{count} {state}' for state, count in counts.items()))
    if study.waiting:
        print(f'more runs to come: {study.waiting}')
    return 0


def _finish(study: spec.Study, workdir: str, group: str, log_wandb: bool) -> list[dict]:
    rows, markdown = table.write_tables(study, workdir)
    print(markdown, end='')
    for path in plots.write_plots(study, rows, workdir):
        print(f'figure: {path}')
    if log_wandb:
        mode = table.log_wandb_table(study, rows, workdir, group)
        if mode:
            print(f'W&B Table logged ({mode}) in group {group}')
    return rows


def _launcher(args: argparse.Namespace, workdir: str, group: str):
    if args.launcher == 'slurm':
        return launch.SlurmLauncher(workdir, group, _slurm_options(args))
    slots = launch.gpu_slots(launch.visible_gpus(), args.gpus_per_run)
    return launch.LocalLauncher(slots)


def _slurm_options(args: argparse.Namespace) -> launch.SlurmOptions:
    return launch.SlurmOptions(
        partition=args.partition, time_min=args.time_min, gpus_per_node=args.gpus_per_node,
        nodes=args.nodes, cpus_per_task=args.cpus_per_task, max_parallel=args.max_parallel,
        cluster=args.submitit_cluster)


def _run(args: argparse.Namespace, extra: list[str], workdir: str, group: str) -> int:
    launcher = None
    attempted: set[str] = set()
    while True:  # A staged study defines more runs once earlier ones finish.
        study = spec.load_study(args.study, workdir)
        runs = _selected(study, args.run)
        states = {run.name: records.run_status(os.path.join(workdir, run.name)).state
                  for run in runs}
        todo = [run for run in runs
                if states[run.name] in ('pending', 'failed') and run.name not in attempted]
        if args.emit:
            planned = launch.plan(todo, workdir, group, extra)
            if not planned:
                print('every selected run is done or running; nothing to emit')
                return 0
            if args.emit == 'sbatch':
                path = launch.emit_sbatch(planned, workdir, group, args.study,
                                          _slurm_options(args))
            else:
                path = launch.emit_wandb_sweep(planned, workdir, group, args.study, extra)
            print(f'wrote {path} ({len(planned)} run(s))')
            if study.waiting:
                print(f'more runs will follow: {study.waiting}; emit again once these finish')
            return 0
        if not todo:
            break
        done = sum(state == 'done' for state in states.values())
        running = sum(state == 'running' for state in states.values())
        print(f'== {args.study}: {len(todo)} run(s) to train, {done} done, {running} running '
              'elsewhere', flush=True)
        launcher = launcher or _launcher(args, workdir, group)
        launcher.launch(launch.plan(todo, workdir, group, extra))
        attempted |= {run.name for run in todo}
        if launcher.interrupted is not None:
            _finish(study, workdir, group, log_wandb=False)
            print(f'== stopped by signal {launcher.interrupted}; run the same command again to '
                  'continue (finished runs are kept, interrupted ones resume)', flush=True)
            return 128 + launcher.interrupted
    rows = _finish(study, workdir, group, log_wandb=True)
    if study.waiting:
        print(f'more runs to come: {study.waiting}')
    selected = {run.name for run in runs}
    failed = [row['run'] for row in rows if row['run'] in selected and row['status'] == 'failed']
    if failed:
        print(f'== failed: {", ".join(failed)} (status shows why; `run` again retries them)')
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, extra = parse(sys.argv[1:] if argv is None else argv)
        workdir = args.workdir
        group = args.group or os.path.basename(os.path.abspath(workdir))
        if args.command == 'run':
            return _run(args, extra, workdir, group)
        study = spec.load_study(args.study, workdir)
        if args.command == 'status':
            return _status(study, workdir, args.run)
        if args.command == 'table':
            _finish(study, workdir, group, log_wandb=True)
        else:
            rows = table.build_rows(study, workdir)
            for path in plots.write_plots(study, rows, workdir):
                print(f'figure: {path}')
        return 0
    except (ValueError, FileNotFoundError) as error:
        print(f'jaxconv.study: error: {error}', file=sys.stderr)
        return 2
