"""A run's config, checked and resolved once: validation, derived keys, and the `Recipe`.

`validate_config` catches nonsense values before anything is written (one line naming the key
and the valid range); `resolve_config` fills the derived keys that `config.json` records;
`Recipe.from_config` reads every recipe switch the trainer acts on, so each switch has exactly
one reader. `config_changes` compares a resumed run's config with the workdir's `config.json`
(the changed-config policy: README, "What survives what").
"""

import ast
import dataclasses
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxconv import config_files, models
from jaxconv.data import pipeline
from jaxconv.train import steps, writer

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# Keys that decide neither the weights nor the reported numbers: a resumed run may change them
# without --allow_config_change (the change is still recorded as a config segment).
BOOKKEEPING_KEYS = ('wandb.', 'dataset.data_dir', 'dataset.prefetch', 'dataset.cache',
                    'train.log_every', 'train.eval_every', 'train.checkpoint_every',
                    'train.keep_checkpoints', 'train.eval_batch_size')

# Module fields the trainer sets itself; model.kwargs may not override them.
_TRAINER_FIELDS = {'num_classes': 'model.num_classes', 'dtype': 'model.compute_dtype',
                   'parent': None, 'name': None}


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and what is valid."""


# ---- model.kwargs: any field of the model's module, typed by its default -----------------------

def model_fields(name: str) -> dict[str, Any]:
    """{field: the variant's default} of the module `create_model(name)` builds.

    Read off the module dataclass itself, so every family's own fields and the shared knobs
    (dropout_rate, drop_path_rate, bn_momentum, ...) are included without a hand-kept list.
    """
    model = models.create_model(name)  # A module description: no parameters are created.
    return {field.name: getattr(model, field.name) for field in dataclasses.fields(model)
            if field.name not in _TRAINER_FIELDS}


def parse_model_kwarg(name: str, key: str, text: str) -> Any:
    """`text`, a command-line value, parsed as field `key` of model `name`, typed by its default."""
    fields = model_fields(name)
    if key in _TRAINER_FIELDS and _TRAINER_FIELDS[key]:
        raise ConfigError(f'model.kwargs.{key} is set by the trainer; set {_TRAINER_FIELDS[key]}')
    if key not in fields:
        raise ConfigError(f'model {name!r} has no field {key!r}; valid model.kwargs: '
                          f'{", ".join(sorted(fields))}')
    return _typed_like(fields[key], text, f'model.kwargs.{key}')


def _typed_like(default: Any, text: str, where: str) -> Any:
    if isinstance(default, bool):
        if text.lower() not in ('true', 'false', '1', '0'):
            raise ConfigError(f'{where}={text} must be true or false')
        return text.lower() in ('true', '1')
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # A bare word: a string.
    if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f'{where}={text} must be an integer (default {default!r})')
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f'{where}={text} must be a number (default {default!r})')
        return float(value)
    if isinstance(default, str):
        return text
    if isinstance(default, tuple | list):
        if not isinstance(value, tuple | list):
            raise ConfigError(f'{where}={text} must be a tuple such as {tuple(default)!r}')
        return tuple(value)
    if default is not None and not isinstance(value, type(default)):
        raise ConfigError(f'{where} ({type(default).__name__}) cannot be set from the command '
                          'line; set it in a config file')
    return value


# ---- Validation: before anything is written ------------------------------------------------------

def _in_unit_interval(value: Any) -> bool:
    """[0, 1): the range of a probability that must leave something (a label, a unit) alone."""
    return isinstance(value, int | float) and 0.0 <= value < 1.0


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError, one line naming the key and its valid values, for a config that
    cannot run sensibly. Needs no dataset and writes nothing."""
    train, optim = config.train, config.optim
    problems = []
    for key in ('batch_size', 'eval_batch_size'):
        value = train[key]
        if value is not None and (not isinstance(value, int) or value < 1):
            problems.append(f'train.{key}={value} must be a positive integer')
    if not _in_unit_interval(train.label_smoothing):
        problems.append(f'train.label_smoothing={train.label_smoothing} must be in [0, 1)')
    if not _in_unit_interval(train.ema_decay):
        problems.append(f'train.ema_decay={train.ema_decay} must be in [0, 1) (0: no EMA)')
    if not (isinstance(train.keep_checkpoints, int) and train.keep_checkpoints >= 1):
        problems.append(f'train.keep_checkpoints={train.keep_checkpoints} must be at least 1 '
                        '(an interrupted run resumes from the newest kept checkpoint)')
    if not (math.isfinite(optim.base_lr) and optim.base_lr >= 0):
        problems.append(f'optim.base_lr={optim.base_lr} must be a finite number >= 0')
    for key in ('mix_prob', 'mix_switch_prob'):
        if not 0.0 <= train[key] <= 1.0:
            problems.append(f'train.{key}={train[key]} must be in [0, 1]')
    if config.model.compute_dtype not in COMPUTE_DTYPES:
        problems.append(f'unknown model.compute_dtype {config.model.compute_dtype!r}; valid: '
                        f'{", ".join(COMPUTE_DTYPES)}')
    from jaxconv.train import finetune  # It raises ConfigErrors: imported after this module.

    problems += finetune.validate(config)
    if problems:
        raise ConfigError(problems[0])
    writer.requested_wandb_mode(config.wandb.mode)  # Raises for an unknown mode.
    _validate_model_kwargs(config.model)


def _validate_model_kwargs(model_config: ml_collections.ConfigDict) -> None:
    fields = model_fields(model_config.name)
    for key in model_config.kwargs:
        if key in _TRAINER_FIELDS and _TRAINER_FIELDS[key]:
            raise ConfigError(f'model.kwargs.{key} is set by the trainer; set '
                              f'{_TRAINER_FIELDS[key]}')
        if key not in fields:
            raise ConfigError(f'model {model_config.name!r} has no field {key!r}; valid '
                              f'model.kwargs: {", ".join(sorted(fields))}')
    # Float fields named *_rate are probabilities of dropping something (dropout, drop-path,
    # FractalNet's local drop); an int one is a count (DenseNet's growth_rate).
    values = {**fields, **model_config.kwargs}
    for key, value in sorted(values.items()):
        if key.endswith('_rate') and isinstance(fields[key], float) and not _in_unit_interval(
                value):
            raise ConfigError(f'model.kwargs.{key}={value} must be in [0, 1)')


# ---- Derived keys --------------------------------------------------------------------------------

def resolve_config(config: ml_collections.ConfigDict, meta: pipeline.DatasetMeta,
                   num_devices: int) -> ml_collections.ConfigDict:
    """Fills derived keys (classes, steps or epochs, eval batch) and checks batch divisibility."""
    config = ml_collections.ConfigDict(config.to_dict())  # A copy; the caller's stays as given.
    train = config.train
    if config.model.num_classes is None:
        config.model.num_classes = meta.num_classes
    if train.eval_batch_size is None:
        train.eval_batch_size = train.batch_size
    for key in ('batch_size', 'eval_batch_size'):
        if train[key] % num_devices:
            raise ConfigError(f'train.{key}={train[key]} must be a multiple of the {num_devices} '
                              'devices (and processes) in the mesh')
    examples_per_epoch = meta.num_train_examples * jax.process_count()
    if train.steps is None:
        if train.epochs is None or train.epochs <= 0:
            raise ConfigError('set train.steps or train.epochs to a positive number')
        train.steps = math.ceil(train.epochs * examples_per_epoch / train.batch_size)
    elif train.steps <= 0:
        raise ConfigError(f'train.steps={train.steps} must be positive')
    train.epochs = train.steps * train.batch_size / examples_per_epoch
    return config


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The recipe switches the train and eval steps act on, read from the config here only."""

    label_smoothing: float
    aux_loss_weight: float
    ema_decay: float  # 0: no averages are kept.
    ema_warmup: bool
    mix: dict | None  # mixup/CutMix settings of `steps.train_step`, or None when both are off.
    normalization: steps.Normalization  # The dataset's per-channel (mean, std), 0..255 units.
    eval_batch_size: int

    @property
    def use_ema(self) -> bool:
        return self.ema_decay > 0

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, steps_per_epoch: float) -> 'Recipe':
        """From a resolved config; `steps_per_epoch` turns `mix_off_epoch` into a step."""
        train = config.train
        mix = None
        if train.mixup_alpha > 0 or train.cutmix_alpha > 0:
            off_step = -1 if train.mix_off_epoch < 0 else round(
                train.mix_off_epoch * steps_per_epoch)
            mix = {'mixup_alpha': train.mixup_alpha, 'cutmix_alpha': train.cutmix_alpha,
                   'prob': train.mix_prob, 'switch_prob': train.mix_switch_prob,
                   'off_step': off_step}
        return cls(label_smoothing=train.label_smoothing, aux_loss_weight=train.aux_loss_weight,
                   ema_decay=train.ema_decay, ema_warmup=train.ema_warmup, mix=mix,
                   normalization=(tuple(config.dataset.mean), tuple(config.dataset.std)),
                   eval_batch_size=train.eval_batch_size)


# ---- Changed configs on resume -------------------------------------------------------------------

def flat_json(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """Dotted keys to JSON values (tuples become lists), as config.json and records hold them."""
    data = json.loads(config.to_json_best_effort()) if isinstance(
        config, ml_collections.ConfigDict) else config
    return config_files.flatten(ml_collections.ConfigDict(data))


def diff_flat(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (before, after)} for every dotted key whose value differs (or exists once)."""
    missing = '<absent>'
    return {key: (before.get(key, missing), after.get(key, missing))
            for key in sorted(before.keys() | after.keys())
            if before.get(key, missing) != after.get(key, missing)}


def config_changes(workdir: str,
                   config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]] | None:
    """{key: (value in the workdir's config.json, value now)}; None when there is no config.json."""
    path = os.path.join(workdir, 'config.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return diff_flat(flat_json(json.load(f)), flat_json(config))


def needs_permission(changes: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The changes that alter the weights or the reported numbers (not bookkeeping keys)."""
    return {key: change for key, change in changes.items()
            if not any(key == k or (k.endswith('.') and key.startswith(k))
                       for k in BOOKKEEPING_KEYS)}


def describe_changes(changes: dict[str, tuple[Any, Any]], limit: int = 6) -> str:
    """'train.batch_size 64 -> 32, optim.base_lr 0.4 -> 0.2' (the first `limit` keys)."""
    parts = [f'{key} {before!r} -> {after!r}' for key, (before, after) in changes.items()]
    more = f' (+{len(parts) - limit} more)' if len(parts) > limit else ''
    return ', '.join(parts[:limit]) + more
