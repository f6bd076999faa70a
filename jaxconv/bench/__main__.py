"""Benchmarks that pick architectures and budgets; prints Markdown tables, writes JSON.

  python -m jaxconv.bench --models resnet50,efficientnet_b0 --batch 32 --resolution 224
        [--dtype bfloat16] [--steps 20] [--compare torch] [--pipeline] [--chart DIR]
        [--json OUT] [--smoke | --static]

Per model (`measure.py`): parameters, multiply-adds (analytic and XLA's), compile time of the
trainer's train and eval steps, their images/s and that of a minimal hand-written step, achieved
FLOP/s, peak memory of the train step and the compiled-step checks (`checks.py`), on every device
JAX sees (one `data` mesh). `--compare torch` times the PyTorch counterparts in the same process
(`torch_side.py`); `--pipeline` the input pipeline per CPU core against timm's
(`input_pipeline.py`); `--chart DIR` draws the complexity chart (`complexity.py`).

`--profile DIR` traces a few train steps (and PyTorch's channels-last ones) and shows where the
time goes by kind of operation (`profile.py`).

`--smoke`: every registered model at the smallest resolution it runs at (32 px and up), batch 8,
2 timed steps, to show that everything runs. `--static`: parameters and multiply-adds only,
nothing compiled. The JSON is rewritten after each model, so an interrupted run keeps what it
measured.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile

_EPILOG = 'Numbers are wall-clock on this machine; run it alone on the machine.'


class BenchError(Exception):
    """Bad input; the message names the fix."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m jaxconv.bench',
                                     description=__doc__.splitlines()[0], epilog=_EPILOG)
    parser.add_argument('--models', default=None,
                        help="comma-separated names, or 'all' (default resnet50,efficientnet_b0; "
                             "all with --smoke/--static; '' for none)")
    parser.add_argument('--batch', type=int, default=None, help='global batch (default 32)')
    parser.add_argument('--resolution', type=int, default=None, help='image side (default 224)')
    parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32',
                        help='compute dtype; parameters stay float32')
    parser.add_argument('--steps', type=int, default=None, help='timed steps (default 20)')
    parser.add_argument('--warmup', type=int, default=None, help='untimed calls (default 3)')
    parser.add_argument('--channels', type=int, default=3)
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--compare', choices=('torch',), default=None)
    parser.add_argument('--torch-modes', default='eager,channels_last,compile')
    parser.add_argument('--pipeline', action='store_true', help='input pipeline per core')
    parser.add_argument('--pipeline-cores', type=int, default=1)
    parser.add_argument('--pipeline-images', type=int, default=512, help='images timed per side')
    parser.add_argument('--pipeline-files', type=int, default=256, help='JPEGs written')
    parser.add_argument('--chart', metavar='DIR', default=None,
                        help='write complexity.png and complexity.csv there')
    parser.add_argument('--json', metavar='OUT', default=None)
    parser.add_argument('--profile', metavar='DIR', default=None,
                        help='trace a few train steps there and show where their time goes')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--smoke', action='store_true')
    mode.add_argument('--static', action='store_true')
    args = parser.parse_args(argv)
    smoke_or_static = args.smoke or args.static
    defaults = {'models': 'all' if smoke_or_static else 'resnet50,efficientnet_b0',
                'batch': 0 if args.smoke else 32, 'resolution': 32 if smoke_or_static else 224,
                'steps': 2 if args.smoke else 20, 'warmup': 1 if args.smoke else 3}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.smoke:
        args.pipeline_images, args.pipeline_files = 16, 16
    return args


def _check(args: argparse.Namespace) -> list[str]:
    """Validates everything before any work; returns the model names."""
    from jaxconv import models

    names = models.list_models() if args.models == 'all' else [
        n.strip() for n in args.models.split(',') if n.strip()]
    for name in set(names) - set(models.list_models()):
        try:
            models.create_model(name)
        except models.UnknownModelError as e:  # Names the close matches and the valid names.
            raise BenchError(str(e)) from None
    import jax

    if args.batch == 0:  # --smoke: 8, or the smallest multiple of the device count above it.
        args.batch = math.lcm(8, jax.device_count())
    for key in ('batch', 'resolution', 'steps', 'channels', 'num_classes', 'pipeline_cores',
                'pipeline_images', 'pipeline_files'):
        if getattr(args, key) < 1:
            raise BenchError(f'--{key.replace("_", "-")} must be at least 1')
    if args.pipeline and args.pipeline_cores > len(os.sched_getaffinity(0)):
        raise BenchError(f'--pipeline-cores {args.pipeline_cores} is more than the '
                         f'{len(os.sched_getaffinity(0))} CPU cores this process may use')
    if args.warmup < 1:
        raise BenchError('--warmup must be at least 1 (the first call is checked, not timed)')
    modes = [m for m in args.torch_modes.split(',') if m]
    from jaxconv.bench.torch_side import MODES
    if args.compare and (not modes or set(modes) - set(MODES)):
        raise BenchError(f'--torch-modes {args.torch_modes!r}: choose from {", ".join(MODES)}')
    if args.compare:
        from jaxconv.torch_support import import_torch
        try:
            import_torch()  # Before anything loads TensorFlow, so triton stays usable.
        except ImportError as e:
            raise BenchError(str(e)) from None
    if names and not args.static and args.batch % jax.device_count():
        raise BenchError(f'--batch {args.batch} must be a multiple of the {jax.device_count()} '
                         'devices JAX sees (the batch is split over them)')
    for path in filter(None, (args.json, args.chart)):
        parent = os.path.dirname(os.path.abspath(path)) if path == args.json else path
        if os.path.exists(parent) and not os.access(parent, os.W_OK):
            raise BenchError(f'cannot write to {parent}; choose another --json or --chart path')
    return names


def _environment(args: argparse.Namespace, argv: list[str]) -> dict:
    import jax

    devices = jax.devices()
    env = {'date': datetime.datetime.now().isoformat(timespec='seconds'),
           'command': 'python -m jaxconv.bench ' + shlex.join(argv),
           'jax': jax.__version__, 'backend': jax.default_backend(),
           'devices': f'{len(devices)} x {devices[0].device_kind}', 'cpu_cores': os.cpu_count(),
           'machine': platform.machine(), 'xla_flags': os.environ.get('XLA_FLAGS', '')}
    if args.compare:
        from jaxconv.bench.torch_side import device_name
        from jaxconv.torch_support import import_torch

        torch = import_torch()[0]
        env.update(torch=torch.__version__, torch_device=device_name(),
                   torch_threads=torch.get_num_threads())
    return env


class _Results:
    """The run's results, printed as Markdown and saved (atomically) as JSON after each part."""

    def __init__(self, path: str | None, environment: dict):
        self.path = path
        self.data = {'environment': environment, 'models': [], 'torch': [], 'pipeline': [],
                     'chart': None}

    def save(self) -> None:
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        temporary = f'{self.path}.partial'
        with open(temporary, 'w') as f:
            json.dump(self.data, f, indent=1, default=float)
        os.replace(temporary, self.path)


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else ""}'[:300]


def _resolution(name: str, args: argparse.Namespace) -> int:
    """--resolution; with --smoke/--static, the smallest probe at or above it the model takes."""
    if not (args.smoke or args.static):
        return args.resolution
    from jaxconv.bench import adapter, measure

    config = adapter.bench_config(name, batch=1, resolution=args.resolution, dtype='float32',
                                  num_classes=args.num_classes)
    return measure.smallest_resolution(adapter.build_model(config), args.channels,
                                       args.resolution)


def _models_section(names: list[str], args: argparse.Namespace, results: _Results) -> bool:
    """Each model (and its PyTorch counterpart); prints the tables; True if one failed."""
    import jax

    from jaxconv.bench import measure, report

    failed = False
    for name in names:
        try:
            resolution = _resolution(name, args)
            if args.static:
                row = {'model': name, 'resolution': resolution, **measure.static_figures(
                    name, resolution=resolution, channels=args.channels,
                    num_classes=args.num_classes)}
            else:
                row = measure.benchmark_model(
                    name, batch=args.batch, resolution=resolution, dtype=args.dtype,
                    steps=args.steps, warmup=args.warmup, channels=args.channels,
                    num_classes=args.num_classes, profile_dir=args.profile)
        except Exception as e:  # One model failing (e.g. out of memory) does not stop the rest.
            row, failed = {'model': name, 'error': _error_line(e)}, True
        results.data['models'].append(row)
        if args.compare and 'error' not in row:
            from jaxconv.bench import torch_side

            results.data['torch'] += torch_side.benchmark_torch(
                name, batch=args.batch, resolution=row['resolution'], dtype=args.dtype,
                steps=args.steps, warmup=args.warmup, modes=tuple(args.torch_modes.split(',')),
                channels=args.channels, num_classes=args.num_classes,
                profile_calls=min(args.steps, measure.PROFILE_CALLS) if args.profile else 0)
        results.save()
        jax.clear_caches()  # Executables of earlier models are not needed again.
        print(f'done: {name}' + (f' ({row["error"]})' if 'error' in row else ''),
              file=sys.stderr, flush=True)
    rows = results.data['models']
    if rows:
        print((report.static_table(rows) if args.static else
               report.model_table(rows) + '\n\n' + report.checks_table(rows)) + '\n')
    if results.data['torch']:
        print(report.torch_table({r['model']: r for r in rows}, results.data['torch']) + '\n')
    if args.profile:
        print(report.profile_table(rows, results.data['torch']) + '\n')
    return failed


def _pipeline_section(args: argparse.Namespace, results: _Results) -> bool:
    from jaxconv.bench import input_pipeline, report

    with tempfile.TemporaryDirectory() as work:
        results.data['pipeline'] = input_pipeline.benchmark_pipelines(
            work, cores=args.pipeline_cores, batch=min(args.batch, 32),
            images=args.pipeline_images, files=args.pipeline_files, resolution=224,
            randaugments=[(0, 0.0), (2, 9.0)])
    results.save()
    print(report.pipeline_table(results.data['pipeline']) + '\n')
    return any('error' in r for r in results.data['pipeline'])


def _chart_section(args: argparse.Namespace, results: _Results) -> None:
    from jaxconv.bench import complexity

    chart = results.data['chart'] = complexity.write_chart(args.chart)
    results.save()
    print(f'complexity chart: {chart["png"]} and {chart["csv"]} ({chart["models"]} models)')
    if chart['missing_from_data_file']:
        print('registered models without a row in jaxconv/bench/published_top1.csv (add one '
              'with its source): ' + ', '.join(chart['missing_from_data_file']))


def run(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2: bad input, 1: a part failed)."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if args.compare:  # On a GPU, leave PyTorch room: JAX would otherwise take 75% up front.
        os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    try:
        names = _check(args)
    except BenchError as e:
        print(f'jaxconv.bench: error: {e}', file=sys.stderr)
        return 2
    results = _Results(args.json, _environment(args, argv))
    env = results.data['environment']
    print(f'# jaxconv.bench, {env["date"]}\n\n`{env["command"]}`\n\njax {env["jax"]} '
          f'({env["backend"]}: {env["devices"]}), {env["cpu_cores"]} CPU cores'
          + (f'; torch {env["torch"]} ({env["torch_device"]}, {env["torch_threads"]} threads)'
             if args.compare else '') + '\n', flush=True)
    failed = _models_section(names, args, results) if names else False
    if args.pipeline:
        failed |= _pipeline_section(args, results)
    if args.chart:
        _chart_section(args, results)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(run())
