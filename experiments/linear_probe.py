"""Layer-wise linear probes: how linearly separable each layer's features are (Alain & Bengio
2016, "Understanding intermediate layers using linear classifier probes"), for a trained network
and, beside it, the same network at its random initialisation.

Each probe run (`study.probe_run`) computes one layer's features once for the train and eval
splits (eval mode, eval preprocessing) and fits a logistic regression on them
(jaxconv.linear_probe); its `top1` is that head's test top-1. The table gives one row per layer
and network; `probes.png` draws probe top-1 against the layer's depth, one curve per network.

  python -m jaxconv.study run experiments/linear_probe.py:smoke --workdir=runs/probe_smoke
  python -m jaxconv.study run \\
      experiments/linear_probe.py:of,of=runs/r18,layers=layer2/layer4/pooled \\
      --workdir=runs/r18_probes

`:smoke`: LeNet-5 trained on the embedded digits for 10 epochs (configs/lenet5_digits.py), then its
layers c1, c3, c5, f6 ('pooled') and the logits probed, and the same layers of LeNet-5 as
initialised (run `random_init`: one step at learning rate 0 and no warm-up, so the initial weights
are saved as a run): 12 runs. `:of,of=DIR`: probes the run already trained in DIR (any run's
workdir; a converted checkpoint needs a run made from it, e.g. `train.init_from=` with
`train.steps=1` and `optim.base_lr=0`). `layers` are module paths from the top
(`jaxconv.models.features`; a nested path has a '/', which this argument uses as its separator:
write a study file for those), and `C` is the inverse L2 strength of every probe.
"""

import os

from jaxconv import study

STUDY = 'linear_probe'
PRESETS = {
    'smoke': dict(config='configs/lenet5_digits.py', epochs=10.0,
                  layers=('c1', 'c3', 'c5', 'pooled', 'logits'), random_init=True, C=1.0, of=''),
    'of': dict(config='', epochs=0.0, layers=('pooled',), random_init=False, C=1.0, of=''),
}
CAPTION = ('network: the probed run (trained, or random_init: the same architecture as '
           'initialised); depth: the layer\'s position among the probed layers; top1: the probe\'s '
           'test top-1 (a logistic regression on that layer\'s features, fitted on the train '
           'split); for the network runs, their own test top-1.')


def _network_runs(settings: dict) -> list[study.Run]:
    overrides = {'train.epochs': settings['epochs']}
    runs = [study.Run('trained', settings['config'], overrides, {'network': 'trained'})]
    if settings['random_init']:
        runs.append(study.Run('random_init', settings['config'],
                              {'train.steps': 1, 'optim.base_lr': 0.0,
                               'optim.warmup_epochs': 0.0},
                              {'network': 'random_init'}))
    return runs


def get_study(arg: str | None, results: study.Results) -> study.Study:
    settings = study.parse_preset(arg, PRESETS, STUDY)
    if not settings['layers']:
        raise ValueError(f'{STUDY}: layers= names no layer; give module paths like c3/pooled')
    if settings['preset'] == 'of':
        if not settings['of']:
            raise ValueError(f'{STUDY}: :of needs the trained run, of=DIR '
                             f'(experiments/{STUDY}.py:of,of=runs/r18)')
        runs, networks = [], {'trained': settings['of']}
    else:
        runs = _network_runs(settings)
        networks = {run.tags['network']: os.path.join(results.workdir, run.name) for run in runs}
    study_args = dict(columns=('network', 'layer', 'depth', 'top1'),
                      caption=CAPTION, plots=(_probe_plot,))
    if not results.done([run.name for run in runs]):
        return study.Study(runs=runs, waiting='the probes wait for their networks', **study_args)
    for network, trained in networks.items():
        for depth, layer in enumerate(settings['layers'], start=1):
            runs.append(study.probe_run(f'{network},layer={layer}', trained, layer, settings['C'],
                                        {'network': network, 'layer': layer, 'depth': depth}))
    return study.Study(runs=runs, **study_args)


def _probe_plot(rows: list[dict], workdir: str) -> list[str]:
    from jaxconv.study import plots

    probes = [row for row in rows if row.get('layer')]
    layers = ', '.join(dict.fromkeys(str(row['layer']) for row in probes))
    path = plots.curves_plot(probes, os.path.join(workdir, 'probes.png'), x='depth', metric='top1',
                             curve_by='network', x_label=f'probed layer ({layers})',
                             title='Linear probe test top-1 per layer', label='layer')
    return [path] if path else []
