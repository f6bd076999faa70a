"""EfficientNet B0-B7 with the TF reference recipe (Tan & Le 2019; tensorflow/tpu
models/official/efficientnet/main.py and README).

  python -m jaxconv.main --config=configs/efficientnet.py:b0 --workdir=runs/effnet_b0
  python -m jaxconv.main --config=configs/efficientnet.py:b3,dataset=cifar10 --workdir=runs/b3_c10

Recipe (all variants): batch 2048, 350 epochs; TF-style RMSProp (decay 0.9, momentum 0.9, eps 1e-3
inside the square root, mean square starting at 1) at 0.016 x batch / 256, 5 warmup epochs, then
x0.97 every 2.4 epochs (staircase); L2 weight decay 1e-5 on kernels; label smoothing 0.1; EMA 0.9999
with TF's num_updates warmup, evaluated beside the raw weights. The model carries the per-variant
dropout, stochastic depth 0.2, BN momentum 0.99 / eps 1e-3 and its training resolution.
Eval center-crops size / (size + 32) of the shorter side (TF's CROP_PADDING = 32), bicubic.

Augmentation: the reference trains B5 with RandAugment N=2, M=17 and B7 with M=28 (README);
B0-B4 and B6 were trained with AutoAugment, which jaxconv does not implement yet, so those presets
use crop and flip only (dataset.randaugment_layers=2 and _magnitude=M switch RandAugment on).
Published top-1 (README, AutoAugment / RandAugment): B0 77.1, B1 79.1, B2 80.1, B3 81.6, B4 82.9,
B5 83.6 / 83.7, B6 84.0, B7 84.3 / 84.7.
"""

import ml_collections

from configs import common
from jaxconv import models

VARIANTS = tuple(range(8))
RANDAUGMENT_MAGNITUDE = {5: 17.0, 7: 28.0}  # The variants trained with RandAugment (README).


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    tokens = [f'variant={t[1:]}' if t[:1] == 'b' and t[1:].isdigit() else t
              for t in filter(None, (arg or '').split(','))]
    arg = common.parse_arg(','.join(tokens), variant=0, dataset='')
    if arg.variant not in VARIANTS:
        raise ValueError(f'unknown EfficientNet variant b{arg.variant}; valid: b0 ... b7')
    config = common.get_config()
    config.model.name = f'efficientnet_b{arg.variant}'
    common.set_dataset(config, 'imagenet2012')
    size = models.create_model(config.model.name).default_image_size
    config.dataset.image_size = size
    config.dataset.eval_crop_fraction = size / (size + 32)
    config.dataset.interpolation = 'bicubic'
    if arg.variant in RANDAUGMENT_MAGNITUDE:
        config.dataset.randaugment_layers = 2
        config.dataset.randaugment_magnitude = RANDAUGMENT_MAGNITUDE[arg.variant]
        config.dataset.randaugment_mode = 'tf'

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
    config.optim.weight_decay_mode = 'l2'
    config.optim.warmup_epochs = 5.0
    config.optim.schedule = 'exponential'
    config.optim.exp_decay_rate = 0.97
    config.optim.exp_decay_epochs = 2.4

    if arg.dataset:
        config = common.small_image_run(config, arg.dataset)
    return config
