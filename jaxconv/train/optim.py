"""Optimizer and learning-rate schedule from the `optim` config, built in one place.

The peak LR follows the linear scaling rule (Goyal et al. 2017, "Accurate, Large Minibatch SGD",
Sec. 2.1): `base_lr * batch_size / lr_batch_base`, reached by a linear warmup from 0 (their
Sec. 2.2) and then decayed by a cosine (Loshchilov & Hutter 2017, without restarts) or by steps
(He et al. 2015: x0.1 at fixed fractions of training).

Weight decay is the classic coupled L2 penalty `wd/2 * ||w||^2` on conv and dense kernels only,
added to the gradient before momentum, as in the TF and torchvision ResNet references; BatchNorm
scales and offsets and all biases are not decayed.
"""

from collections.abc import Callable

import jax
import ml_collections
import optax

SCHEDULES = ('cosine', 'step', 'constant')
OPTIMIZERS = ('sgd',)


def peak_learning_rate(cfg: ml_collections.ConfigDict, global_batch_size: int) -> float:
    return cfg.base_lr * global_batch_size / cfg.lr_batch_base


def learning_rate_schedule(cfg: ml_collections.ConfigDict, *, global_batch_size: int,
                           total_steps: int, steps_per_epoch: float) -> optax.Schedule:
    """Linear warmup over `warmup_epochs`, then `schedule` until `total_steps`."""
    peak = peak_learning_rate(cfg, global_batch_size)
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f'optim.warmup_epochs={cfg.warmup_epochs} is {warmup_steps} steps, which '
                         f'must be in [0, {total_steps}) (lower warmup_epochs or train longer)')
    decay_steps = total_steps - warmup_steps
    if cfg.schedule == 'cosine':
        decay = optax.cosine_decay_schedule(peak, decay_steps=decay_steps)
    elif cfg.schedule == 'step':
        # Boundaries are fractions of the whole run, so the schedule stretches with the budget.
        boundaries = [round(fraction * total_steps) - warmup_steps
                      for fraction in cfg.step_boundaries]
        if any(b <= 0 or b >= decay_steps for b in boundaries):
            raise ValueError(f'optim.step_boundaries={tuple(cfg.step_boundaries)} must all fall '
                             'after warmup and before the end of training')
        decay = optax.piecewise_constant_schedule(
            peak, {boundary: cfg.step_factor for boundary in boundaries})
    elif cfg.schedule == 'constant':
        decay = optax.constant_schedule(peak)
    else:
        raise ValueError(f'unknown optim.schedule {cfg.schedule!r}; valid: {", ".join(SCHEDULES)}')
    if warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak, transition_steps=warmup_steps)
    return optax.join_schedules([warmup, decay], boundaries=[warmup_steps])


def weight_decay_mask(params) -> dict:
    """True for conv and dense kernels (leaves named `kernel`); False for BN and biases."""
    def is_kernel(path, _) -> bool:
        return getattr(path[-1], 'key', None) == 'kernel'

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(cfg: ml_collections.ConfigDict,
                   schedule: Callable) -> optax.GradientTransformation:
    """The optax transformation for `cfg.name`, with masked L2 weight decay in front."""
    if cfg.name == 'sgd':
        base = optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    else:
        raise ValueError(f'unknown optim.name {cfg.name!r}; valid: {", ".join(OPTIMIZERS)}')
    decay = optax.add_decayed_weights(cfg.weight_decay, mask=weight_decay_mask)
    return optax.chain(decay, base)
