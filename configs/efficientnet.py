"""EfficientNet B0-B7 with the TF reference recipe (Tan & Le 2019; tensorflow/tpu
models/official/efficientnet/main.py, utils.py and README).

  python -m jaxconv.main --config=configs/efficientnet.py:b0 --workdir=runs/effnet_b0
  python -m jaxconv.main --config=configs/efficientnet.py:b3,dataset=cifar10 --workdir=runs/b3_c10

Recipe (all variants): batch 2048, 350 epochs; TF-style RMSProp (decay 0.9, momentum 0.9, eps 1e-3
inside the square root, mean square starting at 1) at 0.016 x batch / 256, 5 warmup epochs, then
x0.97 every 2.4 epochs (staircase); L2 weight decay 1e-5 on every parameter but BatchNorm's, biases
included (`l2_loss` over the variables without 'batch_normalization' in their name); label
smoothing 0.1; EMA 0.9999 with TF's num_updates warmup, evaluated beside the raw weights. The
model carries the per-variant dropout, BN momentum 0.99 / eps 1e-3 and its training resolution.
Eval center-crops size / (size + 32) of the shorter side (CROP_PADDING = 32 when the checkpoints
were released; HEAD has used 0.875 since Nov 2021), bicubic.

Where the TF code differs from common habit, the preset follows TF:
- The staircase counts from step 0 (`exponential_decay(global_step, ...)` in `build_learning_rate`)
  and the warmup only overrides it, so the LR is peak x 0.97^2 from the end of warmup.
- Stochastic depth 0.2 with TF's rule `rate * i / N` over the N blocks (efficientnet_model.py
  `Model.call`), drop_path_rule=tf_block, not timm's `i / (N - 1)`.
- BatchNorm statistics over groups of 256 images (bn_group_size). `TpuBatchNormalization`
  (utils.py) averages them over groups of max(8, cores / 8) cores once there are more than 8
  cores, over each core alone on up to 8. At batch 2048 that is 2048 / 8 = 256 images on 8 cores
  (the Cloud TPU tutorial's v3-8) and on 64 or more cores; only 16 or 32 cores give 1024 or 512.
  The README does not say which slice trained each checkpoint, so this is the 256 those give.
  Small-image runs (`dataset=`) normalise over their whole batch instead.
- The float crop becomes uint8 for AutoAugment and RandAugment by truncation.

Augmentation and targets: each preset trains with the augmentation of the README row it targets
(PUBLISHED_TOP1): AutoAugment policy v0 (`autoaugment.py`, README "--augment_name=autoaugment") for
B0-B4 and B6, RandAugment N=2 with M=17 for B5 and M=28 for B7. The README's other rows:
baseline preprocessing (crop and flip only; set dataset.autoaugment='') 76.7, 78.7, 79.8, 81.1,
82.5, 83.1 for B0-B5; AutoAugment 83.6 for B5 and 84.3 for B7.
"""

import ml_collections

from configs import common
from jaxconv import models

VARIANTS = tuple(range(8))
RANDAUGMENT_MAGNITUDE = {5: 17.0, 7: 28.0}  # The variants trained with RandAugment (README).
AUTOAUGMENT_POLICY = 'v0'  # The others: distort_image_with_autoaugment(image, 'v0').
# Top-1 (%) of the README row each preset reproduces: RandAugment for B5 and B7, else AutoAugment.
PUBLISHED_TOP1 = {0: 77.1, 1: 79.1, 2: 80.1, 3: 81.6, 4: 82.9, 5: 83.7, 6: 84.0, 7: 84.7}
BN_GROUP_SIZE = 256  # Images per BatchNorm group (see the module docstring).
EVAL_CROP_PADDING = 32  # Eval crop: image_size / (image_size + CROP_PADDING) of the shorter side.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    tokens = [f'variant={t[1:]}' if t[:1] == 'b' and t[1:].isdigit() else t
              for t in filter(None, (arg or '').split(','))]
    arg = common.parse_arg(','.join(tokens), variant=0, dataset='')
    if arg.variant not in VARIANTS:
        raise ValueError(f'unknown EfficientNet variant b{arg.variant}; valid: b0 ... b7')
    config = common.get_config()
    config.model.name = f'efficientnet_b{arg.variant}'
    config.model.kwargs = ml_collections.ConfigDict(dict(
        drop_path_rule='tf_block', bn_group_size=BN_GROUP_SIZE))
    common.set_dataset(config, 'imagenet2012')
    size = models.create_model(config.model.name).default_image_size
    config.dataset.image_size = size
    config.dataset.eval_crop_fraction = size / (size + EVAL_CROP_PADDING)
    config.dataset.interpolation = 'bicubic'
    if arg.variant in RANDAUGMENT_MAGNITUDE:
        config.dataset.randaugment_layers = 2
        config.dataset.randaugment_magnitude = RANDAUGMENT_MAGNITUDE[arg.variant]
        config.dataset.randaugment_mode = 'tf'
    else:
        config.dataset.autoaugment = AUTOAUGMENT_POLICY

    config.train.batch_size = 2048
    config.train.epochs = 350.0
    config.train.label_smoothing = 0.1
    config.train.ema_decay = 0.9999
    config.train.ema_warmup = True
    config.train.log_every = 100
    config.train.eval_every = 6250  # About 10 epochs at batch 2048.
    config.train.checkpoint_every = 1000

    config.optim.name = 'rmsprop_tf'
    config.optim.base_lr = 0.016
    config.optim.lr_batch_base = 256
    config.optim.momentum = 0.9
    config.optim.rmsprop_decay = 0.9
    config.optim.rmsprop_eps = 1e-3
    config.optim.weight_decay = 1e-5
    config.optim.weight_decay_mask = 'non_norm'  # TF decays biases too, never BatchNorm.
    config.optim.weight_decay_mode = 'l2'
    config.optim.warmup_epochs = 5.0
    config.optim.schedule = 'exponential'
    config.optim.exp_decay_rate = 0.97
    config.optim.exp_decay_epochs = 2.4

    if arg.dataset:
        config = common.small_image_run(config, arg.dataset)
    return config
