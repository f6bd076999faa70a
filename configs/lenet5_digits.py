"""LeNet-5 on the embedded digits dataset: the default job, and the smoke test of the stack.

  python -m jaxconv.main --config=configs/lenet5_digits.py --workdir=runs/lenet5_digits

Digits are 8x8 and resized to LeNet's 32x32 input; no flip (a mirrored 2 is not a 2).
Expected: about 98% test top-1 in well under a minute of training on 2 CPU cores (README table).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.get_config(arg)
    config.model.name = 'lenet5'

    config.dataset.name = 'digits'
    config.dataset.image_size = 32
    config.dataset.crop_padding = 2  # Shifts of up to half an original pixel.
    config.dataset.flip = False
    config.dataset.mean = (78.0,)  # Train-split pixel mean and std of the 32x32 images.
    config.dataset.std = (82.6,)
    config.dataset.shuffle_buffer = 2048  # Larger than the 1,438 train images: a full shuffle.
    config.dataset.cache = True

    config.train.batch_size = 64
    config.train.epochs = 30
    config.train.log_every = 20
    config.train.eval_every = 100
    config.train.checkpoint_every = 200

    config.optim.base_lr = 0.4  # Peak 0.1 at batch 64.
    config.optim.weight_decay = 5e-4
    config.optim.warmup_epochs = 1
    config.optim.nesterov = True
    return config
