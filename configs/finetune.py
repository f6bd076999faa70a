"""Fine-tuning a pretrained network in two phases (the case-study decks' recipe).

  phase=1: the backbone frozen (parameters and BatchNorm statistics), a new head trained;
  phase=2: from phase 1's weights, everything (or `top=REGEX`, the top stages) trained at a 10x
           lower LR, BatchNorm statistics still frozen.

  python -m jaxconv.main --config=configs/finetune.py:phase=1,model=resnet50 \\
      --config.train.init_from=runs/r50_converted --config.dataset.name=... --workdir=runs/p1
  python -m jaxconv.main --config=configs/finetune.py:phase=2,model=resnet50 \\
      --config.train.init_from=runs/p1 --workdir=runs/p2

`experiments/finetune.py` runs both as one study (phase 2 waits for phase 1). The defaults fit
small data: batch 64, SGD with Nesterov momentum, cosine decay, 10 epochs a phase,
`dataset=digits` (grayscale fed as RGB, as ImageNet models take it).
"""

import ml_collections

from configs import common

PHASES = (1, 2)
PHASE2_LR_FACTOR = 0.1  # Phase 2 trains at a tenth of phase 1's LR.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, phase=1, model='resnet18', dataset='digits', top='',
                            base_lr=0.1, epochs=10.0)
    if args.phase not in PHASES:
        raise ValueError(f'configs/finetune.py: phase={args.phase} must be 1 or 2')
    config = common.get_config()
    config.model.name = args.model
    config.model.kwargs.bn_frozen = True  # Frozen BatchNorm statistics in both phases.
    common.set_dataset(config, args.dataset)
    config.dataset.channels = 3
    config.train.batch_size = 64
    config.train.epochs = args.epochs
    config.train.log_every = 10
    config.train.eval_every = 200
    config.train.checkpoint_every = 200
    config.optim.nesterov = True
    config.optim.warmup_epochs = 0.0
    config.optim.weight_decay = 1e-4
    if args.phase == 1:
        config.train.freeze = 'backbone'
        config.optim.base_lr = args.base_lr
    else:
        # The top stages only: everything not matching `top` stays frozen.
        config.train.freeze = f'(?!{args.top}).*' if args.top else ''
        config.optim.base_lr = args.base_lr * PHASE2_LR_FACTOR
    return config
