"""Command line: one view of a trained run, or the same view of two runs side by side.

  python -m jaxconv.inspect WHAT --workdir RUN [--images FILE ...] [--layer NAME] [--out DIR]
  python -m jaxconv.inspect compare WHAT --workdir RUN_A --workdir RUN_B [...]
  python -m jaxconv.inspect layers --workdir RUN      # the layer names --layer accepts

WHAT: filters, activations, top-patches, occlusion, saliency, gradcam, class-max, adversarial,
embedding. Output goes to --out (default RUN/inspect/): WHAT.png and its numbers (WHAT.npz, and
WHAT.csv for tables); --wandb also logs the PNG to the run's W&B run. Bad input exits non-zero
with one line; JAXCONV_TRACEBACK=1 shows the traceback instead.
"""

import argparse
import os
import sys

# Before TensorFlow is imported (the eval images come through tf.data): quiet its start-up notices.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from jaxconv.inspect.views import VIEWS, Options  # noqa: E402

COMMANDS = (*VIEWS, 'compare', 'layers')


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text}')
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m jaxconv.inspect', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=COMMANDS, metavar='WHAT',
                        help=f'one of {", ".join(COMMANDS)}')
    parser.add_argument('view', nargs='?', choices=tuple(VIEWS), metavar='VIEW',
                        help='compare only: the view to compare')
    parser.add_argument('--workdir', action='append', required=True,
                        help='a run directory (twice for compare)')
    parser.add_argument('--out', help='output directory (default: RUN/inspect)')
    parser.add_argument('--images', nargs='+', default=(), help='image files instead of the '
                        'eval split (PNG, JPEG; classes shown are the predictions)')
    parser.add_argument('--num-images', type=_positive, help='eval images to use (default: the '
                        "view's own; all of the split for top-patches, adversarial, embedding)")
    parser.add_argument('--layer', help="module path, 'pooled' or 'logits' (see `layers`)")
    parser.add_argument('--channels', type=int, nargs='+', default=(), help='top-patches')
    parser.add_argument('--classes', type=int, nargs='+', default=(), help='class-max')
    parser.add_argument('--eps', type=float, nargs='+', default=Options.eps,
                        help='adversarial: radii as fractions of the pixel range')
    parser.add_argument('--pgd-steps', type=_positive, default=Options.pgd_steps)
    parser.add_argument('--method', choices=('tsne', 'pca'), default=Options.method,
                        help='embedding projection')
    parser.add_argument('--occluder', type=_positive, help='occlusion: square side in pixels')
    parser.add_argument('--stride', type=_positive, help='occlusion: step between positions')
    parser.add_argument('--steps', type=_positive, default=Options.steps, help='class-max steps')
    parser.add_argument('--batch-size', type=_positive, default=Options.batch_size)
    parser.add_argument('--seed', type=int, default=Options.seed)
    parser.add_argument('--ema', action='store_true', help='use the EMA weights')
    parser.add_argument('--data-dir', help="override the run's dataset.data_dir")
    parser.add_argument('--wandb', action='store_true', help="log the PNG to the run's W&B")
    return parser


def _options(args: argparse.Namespace) -> Options:
    return Options(images=tuple(args.images), num_images=args.num_images, layer=args.layer,
                   channels=tuple(args.channels), classes=tuple(args.classes),
                   eps=tuple(args.eps), pgd_steps=args.pgd_steps, method=args.method,
                   occluder=args.occluder, stride=args.stride, steps=args.steps,
                   batch_size=args.batch_size, seed=args.seed)


def _load(workdir: str, args: argparse.Namespace):
    from jaxconv.inspect.run import load_run

    run = load_run(workdir, ema=args.ema)
    if args.data_dir:
        run.config.dataset.data_dir = args.data_dir
    return run


def _summary_line(run) -> str:
    """'name, step N, top-1 X' for the compare figure's titles."""
    import json

    path = os.path.join(run.workdir, 'summary.json')
    top1 = ''
    if os.path.isfile(path):
        with open(path) as f:
            summary = json.load(f)
        key = 'final_ema_top1' if run.ema else 'final_top1'
        top1 = f', top-1 {summary[key]:.4f}' if key in summary else ''
    return f'{run.name}{" (EMA)" if run.ema else ""}: step {run.step}{top1}'


def _print_layers(run) -> None:
    from jaxconv.models.features import list_layers

    for name, shape in list_layers(run.model, run.variables, run.image_shape).items():
        print(f'{name:40s} {tuple(shape)}')


def run_command(args: argparse.Namespace) -> list[str]:
    """Does what the parsed command line asks; returns the files written."""
    from jaxconv.inspect import figures, wandb_log

    expected = 2 if args.what == 'compare' else 1
    if len(args.workdir) != expected:
        raise ValueError(f'{args.what} takes {expected} --workdir, got {len(args.workdir)}')
    if (args.what == 'compare') != (args.view is not None):
        raise ValueError('name the view to compare (compare WHAT --workdir A --workdir B)'
                         if args.what == 'compare' else f'unexpected argument {args.view!r}')
    options = _options(args)
    if args.what == 'layers':
        _print_layers(_load(args.workdir[0], args))
        return []
    if args.what != 'compare':
        run = _load(args.workdir[0], args)
        paths = VIEWS[args.what](run, options, args.out or os.path.join(run.workdir, 'inspect'))
        if args.wandb:
            wandb_log.log_images(run, {args.what: paths[0]})
        return paths

    runs = [_load(workdir, args) for workdir in args.workdir]
    out = args.out or os.path.join(runs[0].workdir, 'inspect', f'compare-{runs[1].name}')
    names = [run.name for run in runs]
    if names[0] == names[1]:
        names = [f'{name}-{i}' for i, name in enumerate(names)]
    pngs, paths = [], []
    for run, name in zip(runs, names, strict=True):
        written = VIEWS[args.view](run, options, os.path.join(out, name))
        pngs.append(written[0])
        paths.extend(written)
    combined = figures.side_by_side(pngs, [_summary_line(run) for run in runs],
                                    os.path.join(out, f'compare-{args.view}.png'))
    if args.wandb:
        for run in runs:
            wandb_log.log_images(run, {f'compare-{args.view}': combined})
    return [combined, *paths]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        paths = run_command(args)
    except (ValueError, TypeError, RuntimeError, OSError, KeyError) as error:
        if os.environ.get('JAXCONV_TRACEBACK'):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f'jaxconv.inspect: error: {message}', file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
