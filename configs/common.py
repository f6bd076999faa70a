"""Base config: every key jaxconv reads, with its default and what it means.

Family configs call `get_config()` here and change a few fields (one level of
inheritance, like flax's `examples/imagenet/configs/v100_x8.py`). Any key can be
overridden on the command line:

    python -m jaxconv.main --config=configs/lenet5_digits.py --workdir=runs/x \
            --config.optim.base_lr=0.05 --config.train.steps=500

A key that is not here is a typo: the command line rejects it and names the fix.
"""

import ml_collections
from ml_collections.config_dict import placeholder

# Per-dataset defaults that `set_dataset` applies; normalisation constants in 0..255 units.
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
DATASETS = {
    'imagenet2012': dict(image_size=224, preprocess='imagenet', eval_split='validation',
                         mean=IMAGENET_MEAN, std=IMAGENET_STD, cache=False,
                         shuffle_buffer=16_384, flip=True),
    'cifar10': dict(image_size=32, preprocess='small', eval_split='test', crop_padding=4,
                    mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7), cache=True,
                    shuffle_buffer=50_000, flip=True),
    'cifar100': dict(image_size=32, preprocess='small', eval_split='test', crop_padding=4,
                     mean=(129.3, 124.1, 112.4), std=(68.2, 65.4, 70.4), cache=True,
                     shuffle_buffer=50_000, flip=True),
    # Train-split pixel mean and std of the digits resized to 32x32; no flip (a mirrored 2 is not
    # a 2) and crops shift by at most half an original pixel.
    'digits': dict(image_size=32, preprocess='small', eval_split='test', crop_padding=2,
                   mean=(78.0,), std=(82.6,), cache=True, shuffle_buffer=2048, flip=False),
}


def set_dataset(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """Points `config` at dataset `name` with that dataset's preprocessing defaults."""
    if name not in DATASETS:
        raise ValueError(f'no preset for dataset {name!r}; presets: {", ".join(DATASETS)} '
                         '(or set the dataset.* keys yourself)')
    config.dataset.name = name
    config.dataset.update(DATASETS[name])
    return config


def small_image_run(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
    """Turns an ImageNet preset into a run on a small dataset: its preset, batch 128, frequent logs.

    The recipe switches (optimizer, schedule, regularisation) stay as the preset set them, except
    the BatchNorm groups: a preset's `bn_group_size` is its reference's per-replica batch, sized
    for a batch in the thousands, so BN here normalises over the whole small batch.
    """
    set_dataset(config, dataset)
    config.train.batch_size = 128
    if 'bn_group_size' in config.model.kwargs:
        config.model.kwargs.bn_group_size = 0
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.log_every = 20
    return config


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses a config file's argument, `FILE.py:key=value,flag`, typed like its default.

    parse_arg('depth=50,fast', depth=200, fast=False) -> {depth: 50, fast: True} (big_vision's
    `configs/common.py:parse_arg`, with errors that name the valid keys).
    """
    parsed = ml_collections.ConfigDict(defaults)
    for token in filter(None, (arg or '').split(',')):
        key, has_value, value = token.partition('=')
        if key not in defaults:
            valid = f'valid: {", ".join(defaults)}' if defaults else 'this config takes none'
            raise ValueError(f'unknown config argument {key!r}; {valid}')
        default = defaults[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ValueError(f'config argument {key!r} needs a value ({key}=...)')
            parsed[key] = True
        elif isinstance(default, bool):
            parsed[key] = value.lower() in ('1', 'true', 'yes')
        else:
            parsed[key] = type(default)(value)
    return parsed


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parse_arg(arg)  # The base config takes no argument; family configs parse their own.
    config = ml_collections.ConfigDict()
    config.seed = 0  # Root of every random stream: init, data order, augmentation, dropout.

    # --- Model ---------------------------------------------------------------
    config.model = ml_collections.ConfigDict()
    config.model.name = 'lenet5'  # A name from jaxconv.models.list_models().
    config.model.num_classes = placeholder(int)  # None: the dataset's number of labels.
    config.model.kwargs = ml_collections.ConfigDict()  # Architecture overrides, e.g. width_multiplier.
    config.model.compute_dtype = 'float32'  # float32 | bfloat16; params stay float32 either way.

    # --- Data ----------------------------------------------------------------
    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = 'digits'  # A TFDS name (cifar10, imagenet2012) or an embedded one (digits).
    config.dataset.data_dir = 'data/tfds'  # TFDS data_dir; relative paths are from the current directory.
    config.dataset.train_split = 'train'  # TFDS split expression used for training.
    config.dataset.eval_split = 'test'  # TFDS split expression evaluated exactly once per eval.
    config.dataset.minival_fraction = 0.0  # >0: hold the last fraction of train_split out as minival; evals during training and "best" use it, eval_split is read once at the end.
    config.dataset.test_at_end = True  # With a minival: evaluate eval_split once when training ends; False: never read it (search trials: only the winner is tested).
    config.dataset.image_size = 32  # Side of the square training (and eval) crop, in pixels.
    config.dataset.eval_image_size = placeholder(int)  # None: image_size; else the test resolution.
    config.dataset.preprocess = 'small'  # small: pad + random crop | imagenet: inception crop.
    config.dataset.crop_padding = 4  # small: zero padding on each side before the random crop.
    config.dataset.margin = 0  # small: resize to image_size - 2*margin, frame with zeros (LeNet-5's 20x20 digits in 32x32 is 6).
    config.dataset.flip = True  # Random left-right flip in training.
    config.dataset.interpolation = 'bilinear'  # Resize method: bilinear | bicubic | area | nearest.
    config.dataset.randaugment_layers = 0  # RandAugment N (ops per image) in training; 0: off.
    config.dataset.randaugment_magnitude = 10.0  # RandAugment M on the 0..10 scale (tf mode extrapolates above 10).
    config.dataset.randaugment_mode = 'tf'  # tf: TF TPU reference as it runs (16 ops) | tf_prob: each op with p ~ U(0.2, 0.8) | paper: 14 ops incl. identity.
    config.dataset.autoaugment = ''  # AutoAugment policy in training: '' off | v0 (TF EfficientNet's); not with RandAugment.
    config.dataset.area_range = (0.08, 1.0)  # imagenet: inception crop's fraction of the image area.
    config.dataset.aspect_ratio_range = (0.75, 1.33)  # imagenet: inception crop's aspect ratios.
    config.dataset.eval_crop_fraction = 0.875  # imagenet: eval resizes to size/fraction, center-crops size.
    config.dataset.channels = placeholder(int)  # None: the dataset's; 3 decodes grayscale as RGB (for pretrained ImageNet models).
    config.dataset.mean = (127.5,)  # Per-channel mean subtracted, in 0..255 units.
    config.dataset.std = (127.5,)  # Per-channel std divided by, in 0..255 units.
    config.dataset.shuffle_buffer = 16_384  # Examples in the shuffle buffer (per process).
    config.dataset.cache = False  # Keep decoded examples in memory; for datasets that fit.
    config.dataset.prefetch = 2  # Batches tf.data prepares ahead of the trainer.

    # --- Training ------------------------------------------------------------
    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 256  # Global batch over all devices and processes.
    config.train.eval_batch_size = placeholder(int)  # None: batch_size.
    config.train.steps = placeholder(int)  # Optimizer steps; if set, it wins and epochs is derived.
    config.train.epochs = 90.0  # Passes over train_split; used when steps is None.
    config.train.log_every = 100  # Steps between metric fetches (the only host syncs in training).
    config.train.eval_every = 1000  # Steps between evals; an eval always runs at the end.
    config.train.checkpoint_every = 1000  # Steps between checkpoints; one is always saved at the end.
    config.train.keep_checkpoints = 3  # Newest checkpoints kept in workdir/checkpoints.
    config.train.label_smoothing = 0.0  # Epsilon of the uniform label smoothing.
    config.train.aux_loss_weight = 0.3  # Weight of each auxiliary head's loss (GoogLeNet, Inception).
    config.train.mixup_alpha = 0.0  # mixup's Beta(alpha, alpha); 0: off.
    config.train.cutmix_alpha = 0.0  # CutMix's Beta(alpha, alpha); 0: off.
    config.train.mix_prob = 1.0  # Probability that a batch is mixed at all.
    config.train.mix_switch_prob = 0.5  # With both on: probability of CutMix rather than mixup.
    config.train.mix_off_epoch = -1.0  # Stop mixing from this epoch on; -1: never.
    config.train.ema_decay = 0.0  # EMA of params and BN statistics, evaluated beside the raw ones; 0: off.
    config.train.ema_warmup = True
    config.train.init_from = ''  # Fine-tuning: a converted checkpoint (python -m jaxconv.convert) or a run's workdir, loaded at step 0; a head of another num_classes starts fresh.
    config.train.freeze = ''  # Fine-tuning: regex over parameter paths ('a/b/kernel') kept fixed, or 'backbone' (all but the head); BN statistics: model.kwargs.bn_frozen.  # TF's num_updates rule: decay_n = min(ema_decay, (1 + n) / (10 + n)).

    # --- Optimizer and schedule ------------------------------------------------
    config.optim = ml_collections.ConfigDict()
    config.optim.name = 'sgd'  # sgd | rmsprop_tf (TF's RMSProp, EfficientNet) | adamw | lars.
    config.optim.momentum = 0.9  # Momentum coefficient (sgd, rmsprop_tf, lars).
    config.optim.nesterov = False  # Nesterov momentum instead of heavy-ball (sgd, lars).
    config.optim.rmsprop_decay = 0.9  # rmsprop_tf: decay of the mean square.
    config.optim.rmsprop_eps = 1e-3  # rmsprop_tf: epsilon, inside the square root.
    config.optim.adam_b1 = 0.9  # adamw: first-moment decay.
    config.optim.adam_b2 = 0.999  # adamw: second-moment decay.
    config.optim.adam_eps = 1e-8  # adamw: epsilon.
    config.optim.lars_trust_coefficient = 1e-3  # lars: eta of the layer-wise trust ratio.
    config.optim.grad_clip_norm = 0.0  # Clip gradients to this global norm first; 0: off.
    config.optim.lr_multipliers = ()  # ((regex over 'a/b/kernel', multiplier), ...); first match wins; 0 freezes; the regex may be 'backbone' or 'head'.
    config.optim.base_lr = 0.1  # Learning rate at batch lr_batch_base; the peak LR scales linearly.
    config.optim.lr_batch_base = 256  # Peak LR = base_lr * batch_size / lr_batch_base (Goyal et al. 2017).
    config.optim.weight_decay = 1e-4  # Weight decay coefficient; what it covers: weight_decay_mask.
    config.optim.weight_decay_mask = 'kernels'  # kernels: conv/dense kernels only | non_norm: all but BN scale/offset (TF: biases too).
    config.optim.weight_decay_mode = 'l2'  # l2: added to the gradient | decoupled: lr * wd * w after the optimizer.
    config.optim.warmup_epochs = 5.0  # Linear warmup from 0 to the peak LR.
    config.optim.schedule = 'cosine'  # cosine | step | exponential | constant, after warmup.
    config.optim.step_boundaries = (30 / 90, 60 / 90, 80 / 90)  # step: fractions of training.
    config.optim.step_factor = 0.1  # step: LR multiplier at each boundary.
    config.optim.exp_decay_rate = 0.97  # exponential: LR multiplier per staircase step.
    config.optim.exp_decay_epochs = 2.4  # exponential: epochs per staircase step.

    # --- Results -------------------------------------------------------------
    config.wandb = ml_collections.ConfigDict()
    config.wandb.mode = placeholder(str)  # None: $WANDB_MODE, else online | online (offline without credentials or network) | offline | disabled.
    config.wandb.project = 'jaxconv'  # W&B project.
    config.wandb.entity = ''  # W&B entity (team or user); empty: your default entity.
    config.wandb.name = ''  # Run name; empty: the workdir's base name.
    config.wandb.group = ''  # Groups runs of one study (a ladder, a sweep).
    config.wandb.tags = ()  # Free-form tags.
    return config
