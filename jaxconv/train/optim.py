"""Optimizer and learning-rate schedule from the `optim` config, built in one place.

The peak LR follows the linear scaling rule (Goyal et al. 2017, "Accurate, Large Minibatch SGD",
Sec. 2.1): `base_lr * batch_size / lr_batch_base`, reached by a linear warmup from 0 (their
Sec. 2.2) and then decayed by a cosine (Loshchilov & Hutter 2017, without restarts), by steps at
fractions of training (He et al. 2015; the TF ResNet reference stretches them to any budget), or
exponentially in a staircase (EfficientNet: x0.97 every 2.4 epochs).

Weight decay (`weight_decay_mode`) is either the classic coupled L2 penalty `wd/2 * ||w||^2`, added
to the gradient before the optimizer as in the TF and torchvision references, or decoupled
(Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"): `lr * wd * w` subtracted after
the optimizer's preconditioning. `weight_decay_mask` picks what it covers: conv and dense kernels
only ('kernels', the timm habit), or every parameter except the normalisation layers' scales and
offsets ('non_norm', the TF references' rule, which decays biases too).
"""

import functools
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ('cosine', 'step', 'exponential', 'constant')
OPTIMIZERS = ('sgd', 'rmsprop_tf', 'adamw', 'lars')
WEIGHT_DECAY_MODES = ('l2', 'decoupled')
WEIGHT_DECAY_MASKS = ('kernels', 'non_norm')


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f'unknown {key} {value!r}; valid: {", ".join(choices)}')


def peak_learning_rate(cfg: ml_collections.ConfigDict, global_batch_size: int) -> float:
    return cfg.base_lr * global_batch_size / cfg.lr_batch_base


def learning_rate_schedule(cfg: ml_collections.ConfigDict, *, global_batch_size: int,
                           total_steps: int, steps_per_epoch: float) -> optax.Schedule:
    """Linear warmup over `warmup_epochs`, then `schedule` until `total_steps`."""
    _check_choice('optim.schedule', cfg.schedule, SCHEDULES)
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
    elif cfg.schedule == 'exponential':
        # TF EfficientNet (efficientnet/utils.py `build_learning_rate`) evaluates
        # `exponential_decay(global_step, ...)` from step 0 and the warmup only overrides its first
        # steps, so the LR falls to peak * rate^floor(warmup / decay_steps) the moment warmup
        # ends. decay_steps stays fractional, as TF's steps_per_epoch * decay_epochs is.
        # join_schedules hands this schedule the steps since warmup; add them back.
        decay_steps = cfg.exp_decay_epochs * steps_per_epoch
        rate = cfg.exp_decay_rate

        def decay(count):
            return peak * rate ** jnp.floor((count + warmup_steps) / decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak, transition_steps=warmup_steps)
    return optax.join_schedules([warmup, decay], boundaries=[warmup_steps])


def _norm_layer_paths(params) -> set[tuple[str, ...]]:
    """Paths of the modules whose parameters are only `scale` and/or `bias`: normalisation layers.

    Recognised by structure, not by name: a conv or dense layer always has a `kernel`.
    """
    paths = set()

    def visit(node, path: tuple[str, ...]) -> None:
        if not isinstance(node, Mapping):
            return
        if node and all(key in ('scale', 'bias') and not isinstance(value, Mapping)
                        for key, value in node.items()):
            paths.add(path)
        for key, value in node.items():
            visit(value, (*path, str(key)))

    visit(params, ())
    return paths


def weight_decay_mask(params, rule: str = 'kernels') -> dict:
    """True where weight decay applies, by `optim.weight_decay_mask` rule.

    'kernels': conv and dense kernels (leaves named `kernel`); no BatchNorm, no biases.
    'non_norm': every parameter except normalisation layers' scales and offsets, biases included:
    TF's `weight_decay * sum(l2_loss(v))` over the trainable variables whose name lacks
    'batch_normalization' (tensorflow/tpu resnet_main.py and efficientnet/main.py `model_fn`).
    """
    _check_choice('optim.weight_decay_mask', rule, WEIGHT_DECAY_MASKS)
    if rule == 'kernels':
        return jax.tree_util.tree_map_with_path(
            lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)
    norm_layers = _norm_layer_paths(params)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: tuple(str(getattr(e, 'key', e)) for e in path[:-1]) not in norm_layers,
        params)


def _param_name(path) -> str:
    return '/'.join(str(getattr(entry, 'key', entry)) for entry in path)


def lr_multipliers(params, rules: tuple[tuple[str, float], ...]) -> dict:
    """Per-parameter LR multipliers: the first regex matching `a/b/kernel` wins, else 1."""
    def multiplier(path, _) -> float:
        name = _param_name(path)
        return next((float(m) for pattern, m in rules if re.fullmatch(pattern, name)), 1.0)

    return jax.tree_util.tree_map_with_path(multiplier, params)


class RmsPropTFState(NamedTuple):
    count: jax.Array
    mean_square: optax.Updates
    momentum: optax.Updates


def rmsprop_tf(learning_rate: optax.Schedule, *, decay: float, momentum: float,
               eps: float) -> optax.GradientTransformation:
    """RMSProp as tf.compat.v1.train.RMSPropOptimizer computes it (EfficientNet's optimizer).

    ms <- decay * ms + (1 - decay) * g^2, with ms starting at 1 (not 0);
    mom <- momentum * mom + lr * g / sqrt(ms + eps), eps inside the square root;
    w <- w - mom. The LR sits inside the momentum buffer, so a change of LR acts gradually.
    optax.rmsprop starts ms at 0 and applies the LR after momentum; from scratch, that difference
    costs EfficientNets about 3 points (anchors.md, sec. 4).
    """
    def init(params):
        return RmsPropTFState(count=jnp.zeros([], jnp.int32),
                              mean_square=jax.tree.map(jnp.ones_like, params),
                              momentum=jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        lr = learning_rate(state.count)
        mean_square = jax.tree.map(lambda ms, g: decay * ms + (1 - decay) * g * g,
                                   state.mean_square, grads)
        mom = jax.tree.map(lambda m, g, ms: momentum * m + lr * g / jnp.sqrt(ms + eps),
                           state.momentum, grads, mean_square)
        updates = jax.tree.map(jnp.negative, mom)
        return updates, RmsPropTFState(state.count + 1, mean_square, mom)

    return optax.GradientTransformation(init, update)


def make_optimizer(cfg: ml_collections.ConfigDict, schedule: Callable,
                   multipliers: tuple[tuple[str, float], ...] | None = None
                   ) -> optax.GradientTransformation:
    """Clipping, weight decay, the optimizer named `cfg.name`, then per-group LR multipliers:
    `multipliers` when given (the trainer's, `finetune.lr_rules`: freezing and the backbone/head
    groups resolved), else `cfg.lr_multipliers`. A multiplier of 0 leaves a parameter
    bit-identical."""
    _check_choice('optim.name', cfg.name, OPTIMIZERS)
    _check_choice('optim.weight_decay_mode', cfg.weight_decay_mode, WEIGHT_DECAY_MODES)
    decoupled = cfg.weight_decay_mode == 'decoupled'
    if decoupled and cfg.name in ('rmsprop_tf', 'lars'):
        raise ValueError(f'optim.weight_decay_mode=decoupled is not defined for {cfg.name}; '
                         'use weight_decay_mode=l2 (its reference) or optim.name=adamw/sgd')
    _check_choice('optim.weight_decay_mask', cfg.weight_decay_mask, WEIGHT_DECAY_MASKS)
    mask = functools.partial(weight_decay_mask, rule=cfg.weight_decay_mask)
    decay = optax.add_decayed_weights(cfg.weight_decay, mask=mask)
    chain = []
    if cfg.grad_clip_norm > 0:
        chain.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    if cfg.name == 'lars':
        # LARS (You et al. 2017) decays (by weight_decay_mask) and scales by the trust ratio
        # inside its own update; the trust ratio skips BatchNorm and biases, as in the MLPerf
        # ResNet reference.
        chain.append(optax.lars(schedule, weight_decay=cfg.weight_decay,
                                weight_decay_mask=mask,
                                trust_coefficient=cfg.lars_trust_coefficient,
                                trust_ratio_mask=weight_decay_mask, momentum=cfg.momentum,
                                nesterov=cfg.nesterov))
    elif cfg.name == 'rmsprop_tf':
        chain += [decay, rmsprop_tf(schedule, decay=cfg.rmsprop_decay, momentum=cfg.momentum,
                                    eps=cfg.rmsprop_eps)]
    else:
        precondition = (optax.trace(cfg.momentum, nesterov=cfg.nesterov) if cfg.name == 'sgd'
                        else optax.scale_by_adam(cfg.adam_b1, cfg.adam_b2, cfg.adam_eps))
        chain += ([precondition, decay] if decoupled else [decay, precondition])
        chain.append(optax.scale_by_learning_rate(schedule))
    rules = tuple(tuple(rule) for rule in (
        cfg.lr_multipliers if multipliers is None else multipliers))
    if rules:
        chain.append(optax.stateless(
            lambda updates, params: jax.tree.map(jnp.multiply, updates,
                                                 lr_multipliers(params, rules))))
    return optax.chain(*chain)
