"""EfficientNet's compound scaling (Tan & Le 2019, Sec. 3.3, Figures 3 and 8) as a study.

Step 1: fix phi = 1 and grid-search depth, width and resolution coefficients alpha, beta, gamma >= 1
under alpha * beta^2 * gamma^2 ~= 2 (within `tolerance`), one run of the base network each; the
best minival top-1 wins (the paper found 1.2, 1.1, 1.15 for B0). Step 2: scale the base by the
winner to phi = 2..max_phi (phi = 1 is the winner's own run). Beside it, at the same FLOP budgets
2^phi: depth-only (d = 2^phi), width-only (w = 2^(phi/2)) and resolution-only (r = 2^(phi/2))
scaling, Figure 3's single dimensions against Figure 8's compound curve. A network that two
strategies reach (depth-only at phi = 1 is the step-1 candidate 2, 1, 1) trains once and sits on
both curves.

The table lists per run the measured multiply-adds beside the 2^phi prediction (`predicted_macs`,
the base's times 2^phi) and the factor d * w^2 * r^2 the coefficients ask for (`flops_factor`);
channel rounding (multiples of 8) and block rounding (ceil) make them differ, and both stay shown.
The figure `compound.png` is top-1 against multiply-adds, one curve per strategy.

  python -m jaxconv.study run experiments/efficientnet_compound.py:smoke \\
      --workdir=runs/compound_smoke
  python -m jaxconv.study run experiments/efficientnet_compound.py:paper --workdir=runs/compound \\
      --launcher=slurm --gpus-per-node=8 -- --config.dataset.data_dir=/data/tfds

`:smoke` (where it differs from the paper): the base is ResNet-18 at a quarter width (16-128
channels, 2 basic blocks per stage) on the embedded digits at 32x32, not EfficientNet-B0 on
ImageNet at 224; ResNet-RS's baseline recipe for 4 epochs; 10% of train as minival; four step-1
candidates (alpha in 1, 1.2, 2; beta and gamma in 1, 1.1/1.15, sqrt 2 under tolerance 0.1: the
paper's 1.2/1.1/1.15 and the three single-dimension points) and phi up to 2: 9 runs, or 8 when
a single-dimension candidate wins and compound phi = 2 is that strategy's run. README
("Scaling and search studies") has its table and figure: 21 minutes on the shared 2-core CPU
machine under a load average of 6 to 9. The numbers test the machinery: four epochs of digits do
not rank scaling rules.

`:paper`: EfficientNet-B0 with its recipe (configs/efficientnet.py) as the base, 2% of train as
minival (the paper's 25k images), alpha in 1.0..2.0 by 0.1 and beta, gamma in 1.0..1.4 by 0.05
under tolerance 0.1, phi up to 7 (B1..B7's budgets). Expected: a winner near 1.2, 1.1, 1.15 and
the compound curve above the single-dimension ones (Figure 8: +1.4 to 2.5 points at equal FLOPs).
Not run here. The study is 88 runs: the base, 60 candidates, 27 scaled networks. An estimate,
not a measurement: B0 trains at roughly ResNet-50's images/s on GPUs, and ResNet-50's 90 epochs
take 13.2 h on 8 V100s (flax's ImageNet example), so each 350-epoch B0-sized run is about 50 h of
an 8-GPU node and step 1 alone about 3,000 node-hours; the scaled networks cost up to 2^7 times
B0's multiply-adds each. Shrink it with settings, e.g. `:paper,epochs=30,max_phi=3`.
"""

import itertools
import math

from jaxconv import scaling, study

STUDY = 'efficientnet_compound'
STRATEGIES = ('compound', 'depth', 'width', 'resolution')
# Step 1's coefficient grids.
GRIDS = {
    'smoke': dict(alpha=(1.0, 1.2, 2.0), beta=(1.0, 1.1, math.sqrt(2)),
                  gamma=(1.0, 1.15, math.sqrt(2))),
    'paper': dict(alpha=tuple(round(1 + 0.1 * i, 2) for i in range(11)),
                  beta=tuple(round(1 + 0.05 * i, 2) for i in range(9)),
                  gamma=tuple(round(1 + 0.05 * i, 2) for i in range(9))),
    # Tests: two candidates, (1, 1, sqrt 2) and (2, 1, 1).
    'tiny': dict(alpha=(1.0, 2.0), beta=(1.0,), gamma=(1.0, math.sqrt(2))),
}
PRESETS = {
    'smoke': dict(config='configs/resnet_rs.py:depth=18,dataset=digits', base_depth=1.0,
                  base_width=0.25, base_resolution=32, epochs=4.0, minival=0.1, tolerance=0.1,
                  max_phi=2, grid='smoke', strategies=STRATEGIES[1:], steps=0),
    'paper': dict(config='configs/efficientnet.py:variant=0', base_depth=1.0, base_width=1.0,
                  base_resolution=224, epochs=350.0, minival=0.02, tolerance=0.1, max_phi=7,
                  grid='paper', strategies=STRATEGIES[1:], steps=0),
}
CAPTION = ('depth, width: multipliers over the base network (d, w); resolution: input pixels. '
           'flops_factor: d * w^2 * r^2 as the coefficients ask; predicted_macs: the base\'s '
           'multiply-adds times 2^phi; macs: measured on the built network (count_macs), so '
           'rounding of channels and blocks shows as macs / predicted_macs != 1. Choice on '
           'minival_top1; test_top1 is the test split, read once per run at its end.')


def candidates(grid: str, tolerance: float) -> list[tuple[float, float, float]]:
    """Step 1's (alpha, beta, gamma): every grid point with |alpha beta^2 gamma^2 - 2| <=
    tolerance (Sec. 3.3, Eq. 3 at phi = 1)."""
    axes = GRIDS[grid]
    return [(a, b, g) for a, b, g in itertools.product(axes['alpha'], axes['beta'], axes['gamma'])
            if abs(scaling.flops_constraint(a, b, g) - 2) <= tolerance]


def strategy_point(strategy: str, phi: int,
                   chosen: tuple[float, float, float] | None = None) -> scaling.Multipliers:
    """Multipliers of `strategy` at FLOP budget 2^phi."""
    if strategy == 'compound':
        return scaling.compound(phi, *chosen)
    single = {'depth': scaling.depth_only(2.0 ** phi),
              'width': scaling.width_only(2.0 ** (phi / 2)),
              'resolution': scaling.resolution_only(2.0 ** (phi / 2))}
    return single[strategy]


def _number(value: float) -> str:
    return f'{value:.4g}'


class _Runs:
    """Runs keyed by the network they train, so two strategies that reach one network share it."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.runs: dict[tuple, study.Run] = {}
        probe = study.Run('probe', settings['config']).config_dict()
        scale = settings['epochs'] / probe.train.epochs  # Warmup keeps its share of training.
        self.overrides = {
            'dataset.minival_fraction': settings['minival'],
            'train.epochs': settings['epochs'],
            'optim.warmup_epochs': probe.optim.warmup_epochs * scale,
            # `steps` (tests): a few steps, no warmup, so the schedule fits in them.
            **({'train.steps': settings['steps'], 'optim.warmup_epochs': 0.0}
               if settings['steps'] else {}),
        }
        if settings['preset'] == 'smoke':
            self.overrides.update({'train.log_every': 5, 'train.eval_every': 10_000,
                                   'train.checkpoint_every': 10_000})

    def add(self, name: str, point: scaling.Multipliers, tags: dict) -> None:
        s = self.settings
        resolution = scaling.scale_resolution(s['base_resolution'], point.resolution)
        key = (round(point.depth, 6), round(point.width, 6), resolution)
        if key in self.runs:  # Reached before: one more strategy on the same run.
            run = self.runs[key]
            strategy = '+'.join(dict.fromkeys([*run.tags['strategy'].split('+'),
                                               tags['strategy']]))
            self.runs[key] = study.Run(run.name, run.config, run.overrides,  # Gaps filled.
                                       {**tags, **run.tags, 'strategy': strategy})
            return
        overrides = {**self.overrides,
                     'model.kwargs.depth_multiplier': s['base_depth'] * point.depth,
                     'model.kwargs.width_multiplier': s['base_width'] * point.width,
                     'dataset.image_size': resolution}
        if s['preset'] == 'paper':  # The reference's eval crop ratio at every resolution.
            overrides['dataset.eval_crop_fraction'] = resolution / (resolution + 32)
        self.runs[key] = study.Run(name, s['config'], overrides, {
            **tags, 'depth': point.depth, 'width': point.width,
            'flops_factor': point.flops_factor})


def get_study(arg: str | None, results: study.Results) -> study.Study:
    settings = study.parse_preset(arg, PRESETS, STUDY)
    grid = candidates(settings['grid'], settings['tolerance'])
    unknown = set(settings['strategies']) - set(STRATEGIES[1:])
    if unknown:
        raise ValueError(f'{STUDY}: unknown strategies {sorted(unknown)}; valid: '
                         f'{"/".join(STRATEGIES[1:])}')
    if not grid:
        raise ValueError(f'{STUDY}: no (alpha, beta, gamma) of grid {settings["grid"]} is within '
                         f'tolerance={settings["tolerance"]} of 2; raise the tolerance')
    runs = _Runs(settings)
    runs.add('base', scaling.Multipliers(), {'step': 0, 'strategy': 'base', 'phi': 0,
                                             'alpha': 1.0, 'beta': 1.0, 'gamma': 1.0})
    names = [f'alpha={_number(a)},beta={_number(b)},gamma={_number(g)}' for a, b, g in grid]
    finished = results.done(names)
    chosen = grid[names.index(results.best(names))] if finished else None
    for name, (a, b, g) in zip(names, grid, strict=True):
        runs.add(name, scaling.compound(1, a, b, g), {
            'step': 1, 'strategy': 'compound' if (a, b, g) == chosen else 'candidate', 'phi': 1,
            'alpha': a, 'beta': b, 'gamma': g})
    for strategy in settings['strategies']:  # The single-dimension baselines.
        for phi in range(1, settings['max_phi'] + 1):
            runs.add(f'{strategy},phi={phi}', strategy_point(strategy, phi),
                     {'step': 2, 'strategy': strategy, 'phi': phi})
    if chosen is not None:
        for phi in range(2, settings['max_phi'] + 1):
            runs.add(f'compound,phi={phi}', strategy_point('compound', phi, chosen),
                     {'step': 2, 'strategy': 'compound', 'phi': phi, 'alpha': chosen[0],
                      'beta': chosen[1], 'gamma': chosen[2]})

    def derive(rows: list[dict]) -> None:
        base_macs = rows[0]['macs']  # The base network is the first run.
        for row in rows:
            row['chosen'] = 'yes' if chosen is not None and 'compound' in row['strategy'].split(
                '+') and row['phi'] == 1 else ''
            row['predicted_macs'] = (None if base_macs is None
                                     else base_macs * 2.0 ** row['phi'])
            row['macs_over_predicted'] = (None if row['macs'] is None or base_macs is None
                                          else row['macs'] / row['predicted_macs'])

    def figure(rows: list[dict], workdir: str) -> list[str]:
        from jaxconv.study import plots

        return [plots.curves_plot(
            rows, f'{workdir}/compound.png', x='macs', metric='top1',
            curve_by='strategy', shared='base', curves=STRATEGIES,
            x_label='multiply-adds per image', title='Scaling the base network: compound '
            '(step 1 winner) against single dimensions at budgets 2^phi')]

    return study.Study(
        runs=list(runs.runs.values()), derive=derive, plots=(figure,), caption=CAPTION,
        waiting='' if finished else 'step 2 (compound phi >= 2) waits for step 1\'s choice',
        columns=('step', 'strategy', 'phi', 'alpha', 'beta', 'gamma', 'chosen', 'depth', 'width',
                 'resolution', 'flops_factor', 'macs', 'predicted_macs', 'macs_over_predicted',
                 'params', 'minival_top1', 'test_top1'))
