"""ResNet-RS (Bello et al. 2021, "Revisiting ResNets: Improved Training and Scaling Strategies").

The additive ladder of Table 1 (ResNet-200 at 256x256 on ImageNet), each rung the previous plus one
switch, and the published per-depth recipes (anchors.md, "ResNet-RS"):

  python -m jaxconv.main --config=configs/resnet_rs.py:baseline --workdir=runs/rs200/baseline
  python -m jaxconv.main --config=configs/resnet_rs.py:+cosine --workdir=runs/rs200/+cosine
  ...                    --config=configs/resnet_rs.py:depth=50,rung=+ema ...
  python -m jaxconv.main --config=configs/resnet_rs.py:rs50 --workdir=runs/rs50
  python -m jaxconv.recipes ladder configs/resnet_rs.py          # what each rung switches

| rung | switch | published top-1 |     | rung | switch | published top-1 |
| baseline | 90 epochs, step LR, wd 1e-4 | 79.0 |  | +randaugment | RA N=2, M=15 (tf mode) | 81.0 |
| +cosine | cosine LR decay | 79.3 |                | +dropout | dropout 0.25 before the FC | 80.7 |
| +epochs | 350 epochs | 78.8 |                     | +weight_decay | 4e-5 | 82.2 |
| +ema | EMA 0.9999 (TF num_updates warmup) | 79.1 | | +se | squeeze-excite 0.25 | 82.9 |
| +label_smoothing | 0.1 | 80.4 |                 | +resnet_d | ResNet-D stem + shortcut | 83.4 |
| +stochastic_depth | rate 0.1, per stage | 80.6 |

The rungs' switches are the keys in SWITCHES (`python -m jaxconv.recipes ladder` prints them); the
last rung is exactly ResNet-RS-200 (`resnet_rs200`, 83.4 in the release README): +resnet_d also
replaces the stem max pool with a strided 3x3 conv + BN-ReLU (`replace_stem_max_pool: True` in
every released config; resnet_model.py `resnet_generator`).

Reproduction choices, each a key you can change. The reference is the TF1 trainer that produced
Table 1 and the released checkpoints, tensorflow/tpu models/official/resnet/resnet_main.py at the
ResNet-RS release (commit 3709ce3, Feb 2021; unchanged in these respects at HEAD):
- Batch 4096 and LR 0.1 x batch / 256 as the TF reference; a smaller batch keeps the rule.
- SGD with Nesterov momentum 0.9 (`tf.train.MomentumOptimizer(..., use_nesterov=True)`). The TF2
  Model Garden configs use plain momentum; optim.nesterov=False gives that.
- L2 weight decay on every parameter but BatchNorm's, biases included (`l2_loss` over the trainable
  variables without 'batch_normalization' in their name): optim.weight_decay_mask=non_norm.
- BatchNorm statistics per TPU core (plain `tf.layers.batch_normalization` under TPUEstimator):
  bn_group_size=128. The release configs do not name the core count; 128 images per core is what
  every tensorflow/tpu resnet/configs/cloud/*.yaml gives, v3-32.yaml pairing batch 4096 with 32
  cores. Small-image runs (`dataset=`) normalise over their whole batch instead.
- baseline's step schedule drops x0.1 at 30/90, 60/90, 80/90 of training, so +epochs stretches it
  (TF1 `get_lr_schedule`); warmup stays 5 epochs. From +cosine on the schedule is cosine.
- EMA (+ema) averages the BatchNorm statistics too and is evaluated beside the raw weights. The
  same rung sets BN momentum 0, as the reference requires under EMA (`resnet_model_fn` raises
  'Should not use exponential moving average and batch norm momentum'; every RS config has
  `bn_momentum: 0`): the running statistics are the last batch's, so the EMA weights see the EMA of
  batch statistics and the raw weights the last batch's.
- Stochastic depth is per stage (rate x stage / 5, TF `get_drop_connect_rate`); set
  model.kwargs.drop_path_rule=block for timm's linear-per-block rule.
- Eval center-crops size / (size + 32) of the shorter side, bicubic (resnet_preprocessing.py
  CROP_PADDING = 32): 0.833 at 160, 0.889 at 256, 0.909 at 320.
- The float crop becomes uint8 for RandAugment by truncation, as in the reference.
- RandAugment is the TF reference as it runs (16 ops, magnitude not clipped at 10, so M=15 rotates
  up to 45 deg). The reference draws p ~ U(0.2, 0.8) per op but never uses it: every chosen op is
  applied. dataset.randaugment_mode=tf_prob applies p; =paper is the paper's 14-op version.
- The rs* recipes use cosine decay (the paper, Sec. 3; the TF2 configs), not TF1's stretched steps.
- `dataset=digits` or `dataset=cifar10` in the argument turns any preset into a small-image run
  (the dataset's preset from common.py, batch 128); the recipe switches stay as they are.
"""

import ml_collections

from configs import common
from jaxconv import models

RUNGS = ('baseline', '+cosine', '+epochs', '+ema', '+label_smoothing', '+stochastic_depth',
         '+randaugment', '+dropout', '+weight_decay', '+se', '+resnet_d')

# Each rung's switch: the dotted config keys it sets; {depth} is the ladder's depth.
SWITCHES = {
    '+cosine': {'optim.schedule': 'cosine'},
    '+epochs': {'train.epochs': 350.0},
    # TF refuses EMA with BN momentum > 0, so BN statistics become EMAs of batch statistics.
    '+ema': {'train.ema_decay': 0.9999, 'model.kwargs.bn_momentum': 0.0},
    '+label_smoothing': {'train.label_smoothing': 0.1},
    '+stochastic_depth': {'model.kwargs.drop_path_rate': 0.1},
    '+randaugment': {'dataset.randaugment_layers': 2},
    '+dropout': {'model.kwargs.dropout_rate': 0.25},
    '+weight_decay': {'optim.weight_decay': 4e-5},
    '+se': {'model.kwargs.se_ratio': 0.25},
    # ResNet-D's stem and shortcut, and ResNet-RS's strided conv in place of the stem max pool.
    '+resnet_d': {'model.name': 'resnet{depth}d', 'model.kwargs.stem_pool': 'conv'},
}

# Table 1's top-1 (%) after each rung, for the ladder table's comparison columns.
PUBLISHED_TOP1 = {'baseline': 79.0, '+cosine': 79.3, '+epochs': 78.8, '+ema': 79.1,
                  '+label_smoothing': 80.4, '+stochastic_depth': 80.6, '+randaugment': 81.0,
                  '+dropout': 80.7, '+weight_decay': 82.2, '+se': 82.9, '+resnet_d': 83.4}

# Published per-depth recipes: RandAugment magnitude (the TF configs); image size, dropout and
# stochastic depth are the registry defaults of resnet_rs{depth}.
RS_MAGNITUDE = {50: 10, 101: 15, 152: 15, 200: 15, 270: 15, 350: 15, 420: 15}

# Images per BatchNorm group: the reference's per-core batch (see the module docstring).
BN_GROUP_SIZE = 128
# The reference's eval crop, image_size / (image_size + CROP_PADDING) of the shorter side.
EVAL_CROP_PADDING = 32


def _set(config: ml_collections.ConfigDict, dotted_key: str, value) -> None:
    *parents, key = dotted_key.split('.')
    node = config
    for parent in parents:
        node = node[parent]
    node[key] = value


def _set_image_size(config: ml_collections.ConfigDict, size: int) -> None:
    config.dataset.image_size = size
    config.dataset.eval_crop_fraction = size / (size + EVAL_CROP_PADDING)


def _baseline(depth: int) -> ml_collections.ConfigDict:
    config = common.get_config()
    config.model.name = f'resnet{depth}'
    # Declared here at the baseline's values so that each rung changes only its own keys (and a
    # scaling study can shrink or grow the whole ladder with the multipliers).
    config.model.kwargs = ml_collections.ConfigDict(dict(
        drop_path_rate=0.0, drop_path_rule='stage', dropout_rate=0.0, se_ratio=0.0,
        stem_pool='max', bn_momentum=0.9, bn_group_size=BN_GROUP_SIZE,
        depth_multiplier=1.0, width_multiplier=1.0))
    common.set_dataset(config, 'imagenet2012')
    _set_image_size(config, 256)
    config.dataset.interpolation = 'bicubic'  # TF resnet_preprocessing resizes crops bicubically.
    config.dataset.randaugment_magnitude = 15.0
    config.dataset.randaugment_mode = 'tf'

    config.train.batch_size = 4096
    config.train.epochs = 90.0
    config.train.log_every = 100
    config.train.eval_every = 3120  # About 10 epochs at batch 4096.
    config.train.checkpoint_every = 1000
    config.train.ema_warmup = True

    config.optim.name = 'sgd'
    config.optim.momentum = 0.9
    config.optim.nesterov = True  # TF1 resnet_main.py: MomentumOptimizer(use_nesterov=True).
    config.optim.base_lr = 0.1
    config.optim.lr_batch_base = 256
    config.optim.weight_decay = 1e-4
    config.optim.weight_decay_mask = 'non_norm'  # TF decays biases too, never BatchNorm.
    config.optim.weight_decay_mode = 'l2'
    config.optim.warmup_epochs = 5.0
    config.optim.schedule = 'step'
    config.optim.step_boundaries = (30 / 90, 60 / 90, 80 / 90)
    config.optim.step_factor = 0.1
    return config


def _published(depth: int) -> ml_collections.ConfigDict:
    """resnet_rs{depth} with its paper recipe: every ladder switch on, per-depth values."""
    config = ladder(depth, RUNGS[-1])
    config.model.name = f'resnet_rs{depth}'
    # The registry's resnet_rs{depth} carries SE, ResNet-D, the stem conv, dropout and stochastic
    # depth; the recipe adds BN momentum 0 (under EMA) and the per-core BN groups.
    config.model.kwargs = ml_collections.ConfigDict(dict(bn_momentum=0.0,
                                                         bn_group_size=BN_GROUP_SIZE))
    _set_image_size(config, models.create_model(config.model.name).default_image_size)
    config.dataset.randaugment_magnitude = float(RS_MAGNITUDE[depth])
    return config


def ladder(depth: int, rung: str) -> ml_collections.ConfigDict:
    """The baseline plus the switches of every rung up to and including `rung`."""
    if rung not in RUNGS:
        raise ValueError(f'unknown rung {rung!r}; valid: {", ".join(RUNGS)}')
    config = _baseline(depth)
    for name in RUNGS[1:RUNGS.index(rung) + 1]:
        for key, value in SWITCHES[name].items():
            _set(config, key, value.format(depth=depth) if isinstance(value, str) else value)
    return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    # Bare tokens: a rung name ('+cosine') or a published variant ('rs50').
    tokens = []
    for token in filter(None, (arg or '').split(',')):
        if token in RUNGS:
            token = f'rung={token}'
        elif token.startswith('rs') and token[2:].isdigit():
            token = f'variant={token[2:]}'
        tokens.append(token)
    arg = common.parse_arg(','.join(tokens), depth=200, rung='baseline', variant=0, dataset='')
    if arg.variant:
        if arg.variant not in RS_MAGNITUDE:
            raise ValueError(f'unknown ResNet-RS variant rs{arg.variant}; valid: '
                             f'{", ".join(f"rs{d}" for d in RS_MAGNITUDE)}')
        config = _published(arg.variant)
    else:
        config = ladder(arg.depth, arg.rung)
    if arg.dataset:
        config = common.small_image_run(config, arg.dataset)
    return config
