"""ResNet-RS's scaling strategies per training regime (Bello et al. 2021, "Revisiting ResNets",
Sec. 7, Figures 2 and 3) as a study.

Depth, width and resolution are each scaled from one base ResNet, at two or more training lengths
(the paper's regimes: 10, 100 and 350 epochs). The figure `scaling.png` draws top-1 against
multiply-adds, one curve per strategy, one panel per regime; the table marks in each regime the
strategy whose best run is best (`wins`). The paper's findings: depth scaling wins in the long
regime, where larger models overfit; width scaling wins when training is short; resolution should
grow more slowly than compound scaling makes it.

  python -m jaxconv.study run experiments/resnet_rs_scaling.py:smoke --workdir=runs/rs_scaling_smoke
  python -m jaxconv.study run experiments/resnet_rs_scaling.py:paper --workdir=runs/rs_scaling \\
      --launcher=slurm --gpus-per-node=8 --nodes=4 -- --config.dataset.data_dir=/data/tfds

`:paper`: the ResNet-RS recipe (configs/resnet_rs.py, every ladder switch: cosine, EMA, label
smoothing, stochastic depth, RandAugment, dropout, weight decay 4e-5, SE, ResNet-D) at the paper's
values of each dimension -- depths 26, 50, 101, 200, 300, 350, 400; width multipliers 0.25, 0.5,
1.0, 1.5, 2.0; resolutions 128, 160, 224, 320, 448 -- for 10, 100 and 350 epochs, 1% of train as
minival. The paper trains the whole product and its figures draw slices through it; this preset
trains the slices through one base (ResNet-101, width 1.0, 224 px): 15 networks per regime, 45
runs. Differences from the paper: it also tunes regularisation per model size (less for small
and short runs); here every run keeps the recipe's. Depths other than 50-200 take the
`depth_multiplier` of the nearest registered ResNet-D (`ROOT_DEPTHS`). Not run here: 45 ImageNet
runs, 15 of them 350 epochs long and the largest ResNet-400 or ResNet-101 at 448 px; by flax's
ResNet-50 anchor (90 epochs in 13.2 h on 8 V100s) the 350-epoch regime alone is thousands of
8-GPU node-hours (the paper used TPU v3 pods).

`:smoke` (where it differs): ResNet-18 at half depth and a quarter width (one basic block of 16-128
channels per stage) on the embedded digits at 32x32, scaled once per strategy to about 4x the
multiply-adds (4x depth, 2x width, 2x resolution), trained for 2 and for 8 epochs with the
baseline rung's recipe (step decay, no EMA) and 10% of train as minival: 8 runs, 12 minutes on
the shared 2-core CPU machine under a load average of about 6 (README has its table and figure).
Its regimes are too short and too small to reproduce the paper's ranking; it checks the study end
to end.
"""

from jaxconv import study

STUDY = 'resnet_rs_scaling'
STRATEGIES = ('depth', 'width', 'resolution')
# Paper depths 26..400 as depth multipliers of a registered ResNet-D (the block counts round up).
ROOT_DEPTHS = {26: (50, 0.5), 50: (50, 1.0), 101: (101, 1.0), 200: (200, 1.0), 300: (200, 1.5),
               350: (200, 1.75), 400: (200, 2.0)}
PRESETS = {
    'smoke': dict(base_depth=0.5, base_width=0.25, base_resolution=32, depths=(2.0,),
                  widths=(0.5,), resolutions=(64,), epochs=(2.0, 8.0), minival=0.1, steps=0),
    'paper': dict(base_depth=101.0, base_width=1.0, base_resolution=224,
                  depths=(26.0, 50.0, 200.0, 300.0, 350.0, 400.0), widths=(0.25, 0.5, 1.5, 2.0),
                  resolutions=(128, 160, 320, 448), epochs=(10.0, 100.0, 350.0), minival=0.01,
                  steps=0),
}
CAPTION = ('depth: ResNet depth (layers) in :paper, the depth multiplier of ResNet-18 in :smoke; '
           'width: width multiplier; resolution: train pixels; regime: the planned training '
           'length, epochs: the measured one. wins: in each regime, the strategy whose best run '
           'has the highest top1 (EMA weights where EMA is on, test split); minival_top1 beside.')


def _config(settings: dict, depth: float) -> tuple[str, dict]:
    """The config spec and model overrides for a network of `depth`."""
    if settings['preset'] == 'smoke':
        return ('configs/resnet_rs.py:depth=18,dataset=digits',
                {'model.kwargs.depth_multiplier': depth})
    root, multiplier = ROOT_DEPTHS[int(depth)]
    return (f'configs/resnet_rs.py:depth={root},rung=+resnet_d',
            {'model.kwargs.depth_multiplier': multiplier})


def _run(settings: dict, epochs: float, strategy: str, depth: float, width: float,
         resolution: int) -> study.Run:
    config, overrides = _config(settings, depth)
    probe = study.Run('probe', config).config_dict()
    scale = epochs / probe.train.epochs
    overrides.update({
        'model.kwargs.width_multiplier': width,
        'dataset.image_size': resolution,
        'dataset.minival_fraction': settings['minival'],
        'train.epochs': epochs,
        'optim.warmup_epochs': probe.optim.warmup_epochs * min(1.0, scale),
    })
    if settings['preset'] == 'smoke':
        overrides.update({'train.log_every': 5, 'train.eval_every': 10_000,
                          'train.checkpoint_every': 10_000})
    else:
        overrides['dataset.eval_crop_fraction'] = resolution / (resolution + 32)
    if settings['steps']:  # Tests: a few steps, no warmup, so the schedule fits in them.
        overrides.update({'train.steps': settings['steps'], 'optim.warmup_epochs': 0.0})
    name = f'epochs={epochs:g},{strategy},depth={depth:g},width={width:g},resolution={resolution}'
    # `epochs` becomes the measured epochs once the run has finished (steps * batch / examples,
    # 2.08 for 2); `regime` keeps the planned length for grouping.
    return study.Run(name, config, overrides, {'regime': f'{epochs:g} epochs', 'epochs': epochs,
                                               'strategy': strategy, 'depth': depth,
                                               'width': width})


def get_study(arg: str | None) -> study.Study:
    s = study.parse_preset(arg, PRESETS, STUDY)
    base = dict(depth=s['base_depth'], width=s['base_width'], resolution=s['base_resolution'])
    runs = []
    for epochs in s['epochs']:
        runs.append(_run(s, epochs, 'base', **base))
        for strategy, values in zip(STRATEGIES, (s['depths'], s['widths'], s['resolutions']),
                                    strict=True):
            for value in values:
                runs.append(_run(s, epochs, strategy, **{**base, strategy: value}))

    def derive(rows: list[dict]) -> None:
        for row in rows:
            row['wins'] = ''
        for regime in dict.fromkeys(row['regime'] for row in rows):
            scaled = [row for row in rows if row['regime'] == regime and row['top1'] is not None
                      and row['strategy'] != 'base']
            if scaled:
                max(scaled, key=lambda row: row['top1'])['wins'] = regime

    def figure(rows: list[dict], workdir: str) -> list[str]:
        from jaxconv.study import plots

        return [plots.curves_plot(
            rows, f'{workdir}/scaling.png', x='macs', metric='top1', curve_by='strategy',
            panel_by='regime', shared='base', curves=STRATEGIES, label=None,
            x_label='multiply-adds per image',
            title='Depth, width and resolution scaling per training regime')]

    return study.Study(
        runs=runs, derive=derive, plots=(figure,), caption=CAPTION,
        columns=('regime', 'epochs', 'strategy', 'depth', 'width', 'resolution', 'macs',
                 'params', 'top1', 'minival_top1', 'wins', 'img_per_sec'))
