"""The ResNet-RS training ladder (Bello et al. 2021, "Revisiting ResNets", Table 1) as a study.

Eleven runs, one per rung of `configs/resnet_rs.py` (RUNGS): the baseline, then each rung the
previous one plus its switch (SWITCHES). The table compares each rung's top-1 with the previous
rung's and with the baseline's, with Table 1's published values beside; from +ema on the compared
top-1 is the EMA weights' (the TF reference evaluates only the averaged weights), the raw
weights' stays beside it. Both presets hold a minival out of the train split: evals during
training and any "best" use it, and the test split is read once, at the end.

  python -m jaxconv.study run experiments/resnet_rs_ladder.py:smoke --workdir=runs/ladder_smoke
  python -m jaxconv.study run experiments/resnet_rs_ladder.py:paper --workdir=runs/rs200_ladder \
      --launcher=slurm --gpus-per-node=8 --nodes=4 -- --config.dataset.data_dir=/data/tfds

`:smoke` is ResNet-18 at half its depth and an eighth of its width (one basic block of 8-64 channels
per stage) on the embedded digits at 32x32, batch 128, 10% of train as minival. Every epoch count of
the recipe is scaled by 2/90 (the 90-epoch rungs train 2 epochs, 21 steps; from +epochs on, 350
epochs become 7.8, 79 steps), and RandAugment's magnitude by 32/256 (its translation and cutout are
in pixels, so this keeps their share of the image). README ("Studies") has its table and figure: 7
min 48 s on the 2-core CPU machine with nothing else running. Its numbers test the machinery, not
the recipe: eight epochs of digits on a network with 8-64 channels are not ImageNet (RandAugment,
for one, costs about 50 points).

`:paper` is Table 1 itself: ResNet-200 at 256x256 on ImageNet, batch 4096, 90 then 350 epochs,
with 1% of train held out as minival (big_vision's `train[99%:]`; set
`--config.dataset.minival_fraction=0` after `--` to train on all of it, as the TF reference did).
Target: the published column, 79.0 -> 83.4 top-1 on the validation split (not yet run here: it
needs a GPU cluster, about 350 epochs of ResNet-200 per rung).
"""

from configs import resnet_rs
from jaxconv import config_files, study

CONFIG = 'configs/resnet_rs.py'
PRESETS = ('smoke', 'paper')

# :smoke's training length relative to the recipe's: the 90-epoch baseline trains 2 epochs.
SMOKE_EPOCH_SCALE = 2 / 90
SMOKE_OVERRIDES = {
    'model.kwargs.depth_multiplier': 0.5,  # ResNet-18's 2 blocks per stage -> 1.
    'model.kwargs.width_multiplier': 0.125,  # 64-512 channels -> 8-64.
    'dataset.minival_fraction': 0.1,  # 144 of the 1,438 digits.
    'train.log_every': 5,
    'train.eval_every': 25,  # On minival; checkpoints come at the end and on SIGTERM.
}
PAPER_OVERRIDES = {'dataset.minival_fraction': 0.01}

CAPTION = ('top1: the test top-1 (%) the ladder compares, from the EMA weights where EMA is on '
           '(top1_weights), else the raw ones (test_top1); ema_top1: the EMA weights\' test top-1. '
           'delta: points over the previous rung; delta_baseline: over the baseline. published: '
           'Bello et al. 2021, Table 1 (ResNet-200, 256x256, ImageNet validation).')


def _rung_runs(preset: str) -> list[study.Run]:
    runs = []
    for rung in resnet_rs.RUNGS:
        if preset == 'smoke':
            run = study.Run(rung, f'{CONFIG}:depth=18,dataset=digits,rung={rung}')
            recipe = study.Run(rung, f'{CONFIG}:rung={rung}').config_dict()  # At ImageNet scale.
            # TF RandAugment translates and cuts out in pixels (150 px and a 120 px square at
            # M=15): on a 32 px digit that blanks the image. Scaling M by 32/256 moves and cuts the
            # same fraction of the image as the recipe does at 256 px. The colour ops change too:
            # most get milder, Solarize and Posterize harsher (their strength falls with level).
            pixel_scale = run.config_dict().dataset.image_size / recipe.dataset.image_size
            overrides = {
                **SMOKE_OVERRIDES,
                'train.epochs': recipe.train.epochs * SMOKE_EPOCH_SCALE,
                'optim.warmup_epochs': recipe.optim.warmup_epochs * SMOKE_EPOCH_SCALE,
                'dataset.randaugment_magnitude':
                    recipe.dataset.randaugment_magnitude * pixel_scale}
        else:
            run = study.Run(rung, f'{CONFIG}:rung={rung}')
            overrides = PAPER_OVERRIDES
        runs.append(study.Run(rung, run.config, overrides, {'rung': rung}))
    return runs


def _switches(runs: list[study.Run]) -> dict[str, str]:
    """What each rung's config changes over the previous rung's, as `key=value` text."""
    flat = [config_files.flatten(run.config_dict()) for run in runs]
    switches = {runs[0].name: ''}
    for previous, current, run in zip(flat, flat[1:], runs[1:], strict=False):
        changed = sorted(key for key in current if current[key] != previous.get(key))
        switches[run.name] = ', '.join(f'{key}={current[key]:.4g}' if isinstance(
            current[key], float) else f'{key}={current[key]}' for key in changed)
    return switches


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def get_study(arg: str | None) -> study.Study:
    if arg not in PRESETS:
        raise ValueError(f'resnet_rs_ladder takes a preset, one of {", ".join(PRESETS)} '
                         f'(experiments/resnet_rs_ladder.py:smoke); got {arg!r}')
    runs = _rung_runs(arg)
    switches = _switches(runs)

    def derive(rows: list[dict]) -> None:
        baseline, published_baseline = rows[0]['top1'], resnet_rs.PUBLISHED_TOP1[rows[0]['run']]
        for index, row in enumerate(rows):
            previous = rows[index - 1] if index else None
            published = resnet_rs.PUBLISHED_TOP1[row['run']]
            previous_published = resnet_rs.PUBLISHED_TOP1[previous['run']] if previous else None
            row['switch'] = switches[row['run']]
            row['delta'] = _difference(row['top1'], previous['top1']) if previous else None
            row['delta_baseline'] = _difference(row['top1'], baseline) if previous else None
            row['published_top1'] = published
            row['published_delta'] = _difference(published, previous_published)
            row['published_delta_baseline'] = (published - published_baseline) if previous else None

    return study.Study(
        runs=runs, derive=derive, plots=('ladder', 'cost'), caption=CAPTION,
        columns=('switch', 'test_top1', 'ema_top1', 'top1', 'delta', 'delta_baseline',
                 'published_top1', 'published_delta', 'published_delta_baseline', 'minival_top1',
                 'macs', 'img_per_sec'))
