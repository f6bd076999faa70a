"""LeNet-5 on the embedded digits dataset: the default job, and the smoke test of the stack.

  python -m jaxconv.main --config=configs/lenet5_digits.py --workdir=runs/lenet5_digits

Digits are 8x8 and resized to LeNet's 32x32 input (dataset preset in common.py).
Expected: 99.7% test top-1 (358 of 359) in about 15 s of training on 2 CPU cores (README table).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.get_config(arg)
    config.model.name = 'lenet5'
    common.set_dataset(config, 'digits')

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
