"""Random search, then coarse to fine, against a grid of the same budget (Bergstra & Bengio 2012,
"Random Search for Hyper-Parameter Optimization"; CS231n's practice: lr = 10**uniform(-6, -3),
reg = 10**uniform(-5, 5), then narrow the ranges to where the best trials landed).

Round 1 samples `trials` configs from SPACE (seeded: the same study re-samples the same trials).
Round r+1 narrows each range to the span of round r's `top_k` trials on minival top-1
(jaxconv.study.search.narrow) and samples again. Beside it, a grid with the same number of points
as one round spans the same ranges, for the comparison the course draws: with one key that
matters, random search tries `trials` values of it, the grid only trials^(1/keys).

Every choice is made on minival: trials hold 10% (1% in :paper) of the train split out and never
read the test split (dataset.test_at_end=False). The winner -- the best minival top-1 over every
trial -- is retrained alone as run `winner` with the test split read once, at its end.

The figure `search.png`: learning rate against weight decay, each trial coloured by its minival
top-1, one panel per round and the grid's panel beside.

  python -m jaxconv.study run experiments/hparam_search.py:smoke --workdir=runs/search_smoke
  python -m jaxconv.study run experiments/hparam_search.py:paper --workdir=runs/search \\
      --launcher=slurm --gpus-per-node=8 -- --config.dataset.data_dir=/data/tfds

`:smoke`: LeNet-5 on the embedded digits (configs/lenet5_digits.py) for 6 epochs, base_lr in
loguniform(1e-3, 10) and weight_decay in loguniform(1e-6, 1e-1), 2 rounds of 4 trials, top 2, a
2x2 grid: 13 runs. `:paper`: ResNet-50 with the ResNet-RS baseline recipe on ImageNet (90-epoch
schedule cut to 30 epochs per trial), 3 rounds of 16 trials, top 4, a 4x4 grid: 65 runs. Not run
here; from flax's ImageNet example (ResNet-50, 90 epochs in 13.2 h on 8 V100s) a 30-epoch trial is
about 4.4 h of an 8-GPU node, the study about 290 node-hours (2,300 V100-hours).
"""

from jaxconv import study
from jaxconv.study import search

STUDY = 'hparam_search'
PRESETS = {
    'smoke': dict(config='configs/lenet5_digits.py', epochs=6.0, minival=0.1, rounds=2,
                  trials=4, top_k=2, seed=0, lr=(1e-3, 10.0), wd=(1e-6, 1e-1), steps=0),
    'paper': dict(config='configs/resnet_rs.py:depth=50', epochs=30.0, minival=0.01, rounds=3,
                  trials=16, top_k=4, seed=0, lr=(1e-2, 10.0), wd=(1e-6, 1e-2), steps=0),
}
LR, WD = 'optim.base_lr', 'optim.weight_decay'
METRIC = 'minival_top1'  # Every choice: the search never looks at the test split.
CAPTION = ('round: the coarse-to-fine round (1 is the coarse one), grid: the grid of one round\'s '
           'budget, winner: the best trial on minival retrained once with the test split read at '
           'its end (test_top1; the trials\' test_top1 stays empty). optim.base_lr is per 256 '
           'images.')


def space_of(settings: dict) -> dict[str, search.Distribution]:
    return {LR: search.loguniform(*settings['lr']), WD: search.loguniform(*settings['wd'])}


def _overrides(settings: dict, trial: dict, test: bool) -> dict:
    probe = study.Run('probe', settings['config']).config_dict()
    overrides = {**trial, 'dataset.minival_fraction': settings['minival'],
                 'dataset.test_at_end': test, 'train.epochs': settings['epochs'],
                 'optim.warmup_epochs': min(probe.optim.warmup_epochs, settings['epochs'] / 6)}
    if settings['preset'] == 'smoke':
        overrides.update({'train.eval_every': 10_000, 'train.checkpoint_every': 10_000})
    if settings['steps']:  # Tests: a few steps, no warmup, so the schedule fits in them.
        overrides.update({'train.steps': settings['steps'], 'optim.warmup_epochs': 0.0})
    return overrides


def round_names(settings: dict, round_number: int) -> list[str]:
    return [f'round={round_number},trial={index}' for index in range(settings['trials'])]


def round_spaces(settings: dict, results: study.Results) -> list[dict[str, search.Distribution]]:
    """The space of every round that can be defined so far: round 1's is SPACE, round r+1's the
    span of round r's top_k trials, once round r has finished."""
    spaces = [space_of(settings)]
    while len(spaces) < settings['rounds']:
        names = round_names(settings, len(spaces))
        if not results.done(names):
            break
        trials = sample_round(settings, spaces, len(spaces))
        scores = [results.row(name)[METRIC] for name in names]
        spaces.append(search.narrow(spaces[-1], trials, scores, settings['top_k']))
    return spaces


def sample_round(settings: dict, spaces: list, round_number: int) -> list[dict]:
    # Each round its own seeded stream, so round 2 does not replay round 1's draws.
    return search.sample(spaces[round_number - 1], settings['trials'],
                         seed=settings['seed'] * 1000 + round_number)


def get_study(arg: str | None, results: study.Results) -> study.Study:
    s = study.parse_preset(arg, PRESETS, STUDY)
    spaces = round_spaces(s, results)
    runs = []
    for round_number in range(1, len(spaces) + 1):
        trials = sample_round(s, spaces, round_number)
        for name, trial in zip(round_names(s, round_number), trials, strict=True):
            runs.append(study.Run(name, s['config'], _overrides(s, trial, test=False),
                                  {'search': 'random', 'round': round_number, **trial}))
    for index, point in enumerate(search.grid_points(spaces[0], s['trials'])):
        runs.append(study.Run(f'grid,trial={index}', s['config'],
                              _overrides(s, point, test=False),
                              {'search': 'grid', 'round': 'grid', **point}))
    searched = [run.name for run in runs]
    finished = len(spaces) == s['rounds'] and results.done(searched)
    if finished:
        best = next(run for run in runs if run.name == results.best(searched, METRIC))
        trial = {key: best.overrides[key] for key in spaces[0]}
        runs.append(study.Run('winner', s['config'], _overrides(s, trial, test=True),
                              {'search': 'winner', 'round': 'winner', 'chosen_from': best.name,
                               **trial}))
    waiting = '' if finished else (f'round {len(spaces) + 1} waits for round {len(spaces)}'
                                   if len(spaces) < s['rounds'] else 'the winner waits for '
                                   'every trial')
    ranges = {f'round {number}': search.describe(space) for number, space in
              enumerate(spaces, start=1)}

    def figure(rows: list[dict], workdir: str) -> list[str]:
        from jaxconv.study import plots

        return [plots.scatter_panels(
            [row for row in rows if row['search'] != 'winner'], f'{workdir}/search.png',
            x=LR, y=WD, colour=METRIC, panel_by='round',
            title='Random search, coarse to fine, and a grid of one round\'s budget')]

    return study.Study(
        runs=runs, plots=(figure,), waiting=waiting,
        caption=CAPTION + ' Ranges: ' + '; '.join(
            f'{name}: ' + ', '.join(f'{key} {text}' for key, text in space.items())
            for name, space in ranges.items()),
        columns=('search', 'round', LR, WD, 'chosen_from', 'minival_top1', 'test_top1',
                 'macs', 'params', 'img_per_sec'))
