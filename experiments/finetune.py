"""Two-phase fine-tuning (configs/finetune.py) as one study: phase 2 starts from phase 1.

  python -m jaxconv.study run experiments/finetune.py:init_from=runs/r18 --workdir=runs/ft
  python -m jaxconv.study run experiments/finetune.py:smoke --workdir=runs/ft_smoke

`init_from=DIR`: a converted checkpoint (`python -m jaxconv.convert ... --out DIR`) or a run's
workdir; `model=NAME` (default resnet18) must be the model it holds; `top=REGEX` limits phase 2
to the parameters it matches (e.g. 'layer4.*|fc/.*'). `:smoke` first trains its own "pretrained"
ShuffleNetV2 x0.5 on digits for 2 epochs (run `pretrain`), then fine-tunes from it.

Runs: [pretrain], phase1 (head only, backbone and BN statistics frozen), phase2 (all, or the top,
at 10x lower LR, init_from phase1's workdir). The table compares their test top-1.
"""

import os

from jaxconv import study

CONFIG = 'configs/finetune.py'
SMOKE_MODEL = 'shufflenet_v2_x0_5'


def get_study(arg: str | None, results: study.Results) -> study.Study:
    options = dict(token.partition('=')[::2] for token in filter(None, (arg or '').split(',')))
    smoke = 'smoke' in options
    unknown = set(options) - {'smoke', 'init_from', 'model', 'top'}
    if unknown or not (smoke or options.get('init_from')):
        raise ValueError('experiments/finetune.py takes init_from=DIR[,model=NAME][,top=REGEX] '
                         f'or smoke; got {arg!r}')
    model = options.get('model') or (SMOKE_MODEL if smoke else 'resnet18')
    config_arg = f'model={model}' + (',epochs=2.0' if smoke else '')
    runs, done = [], []
    if smoke:  # A stand-in for published weights: the same network trained on digits.
        runs.append(study.Run('pretrain', f'{CONFIG}:phase=2,{config_arg}', {
            'train.freeze': '', 'optim.base_lr': 0.1, 'model.kwargs.bn_frozen': False},
            {'phase': 0}))
        init_from = os.path.join(results.workdir, 'pretrain')
        done = ['pretrain']
    else:
        init_from = options['init_from']
    if not results.done(done):
        return study.Study(runs=runs, waiting='phase 1 waits for the pretrained run')
    runs.append(study.Run('phase1', f'{CONFIG}:phase=1,{config_arg}',
                          {'train.init_from': init_from}, {'phase': 1}))
    if not results.done(done + ['phase1']):
        return study.Study(runs=runs, waiting='phase 2 starts from phase 1')
    top = f',top={options["top"]}' if options.get('top') else ''
    runs.append(study.Run('phase2', f'{CONFIG}:phase=2,{config_arg}{top}',
                          {'train.init_from': os.path.join(results.workdir, 'phase1')},
                          {'phase': 2}))
    return study.Study(runs=runs, columns=('phase', 'test_top1', 'params', 'img_per_sec'))
