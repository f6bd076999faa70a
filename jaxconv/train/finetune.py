"""Fine-tuning switches of the trainer: `train.init_from`, `train.freeze` and the LR groups.

- `train.init_from=DIR`: a converted checkpoint (`python -m jaxconv.convert`, DIR/convert.json)
  or any run's workdir. At step 0 (never on resume) every parameter and BatchNorm statistic of the
  model is taken from DIR. The head, the leaves whose shape depends on `num_classes`, is kept
  freshly initialised when its shape differs (one log line says so). Any other missing or
  misshapen leaf means a different model: the run stops with one line naming the first one.
- `train.freeze`: a regex over parameter paths ('layer[1-3].*', matched against 'a/b/kernel'),
  or the word `backbone` (every parameter outside the head). Frozen parameters get an LR
  multiplier of 0, so they stay bit-identical. Their BatchNorm statistics are a model switch,
  `model.kwargs.bn_frozen=True`: every BatchNorm normalises with its running statistics and
  leaves them untouched (the usual choice for small data).
- `optim.lr_multipliers`: ((regex, multiplier), ...) as before; a pattern may also be the word
  `backbone` or `head`, e.g. (('backbone', 0.1),) trains the backbone at a tenth of the LR.
"""

import json
import os
import re
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxconv.convert.core import flatten, unflatten
from jaxconv.convert.files import CHECKPOINT_DIR, head_leaves, is_converted
from jaxconv.train.recipe import ConfigError

GROUPS = ('backbone', 'head')


class InitFromError(ConfigError):
    """`train.init_from` names nothing loadable, or a model that does not fit this one."""


def head_parameters(config: ml_collections.ConfigDict, image_size: int) -> set[str]:
    """Parameter names ('fc/kernel') of the config's model whose shape depends on num_classes."""
    leaves = head_leaves(config.model.name, image_size, **config.model.kwargs)
    return {key.split('/', 1)[1] for key in leaves if key.startswith('params/')}


def group_pattern(pattern: str, head: set[str]) -> str:
    """`pattern` as a regex over parameter names; the words `backbone` and `head` become the
    names outside / inside the head."""
    alternatives = '|'.join(re.escape(name) for name in sorted(head)) or '(?!)'
    if pattern == 'head':
        return f'(?:{alternatives})'
    if pattern == 'backbone':
        return f'(?!(?:{alternatives})$).*'
    return pattern


def lr_rules(config: ml_collections.ConfigDict, head: set[str]) -> tuple[tuple[str, float], ...]:
    """The optimizer's (regex, LR multiplier) rules: `train.freeze` (multiplier 0) first, then
    `optim.lr_multipliers`, groups resolved (first match wins)."""
    rules = []
    if config.train.freeze:
        rules.append((group_pattern(config.train.freeze, head), 0.0))
    rules += [(group_pattern(pattern, head), float(multiplier))
              for pattern, multiplier in config.optim.lr_multipliers]
    return tuple(rules)


def validate(config: ml_collections.ConfigDict) -> list[str]:
    """One-line problems of the fine-tuning keys (recipe.validate_config reports the first)."""
    problems = []
    patterns = ([config.train.freeze] if config.train.freeze else []) + [
        rule[0] if isinstance(rule, list | tuple) and len(rule) == 2 else rule
        for rule in config.optim.lr_multipliers]
    for rule in config.optim.lr_multipliers:
        if not (isinstance(rule, list | tuple) and len(rule) == 2
                and isinstance(rule[1], int | float) and rule[1] >= 0):
            problems.append(f'optim.lr_multipliers entry {rule!r} must be (regex, multiplier >= 0)')
    for pattern in patterns:
        if not isinstance(pattern, str) or pattern in GROUPS:
            continue
        try:
            re.compile(pattern)
        except re.error as error:
            problems.append(f'{pattern!r} in train.freeze/optim.lr_multipliers is not a regex '
                            f'({error}); or use one of {", ".join(GROUPS)}')
    init_from = config.train.init_from
    if init_from and not (is_converted(init_from) or os.path.isdir(
            os.path.join(init_from, 'checkpoints'))):
        problems.append(f'train.init_from={init_from} is neither a converted checkpoint '
                        '(python -m jaxconv.convert --out DIR) nor a run workdir with checkpoints')
    return problems


def _saved_tree_path(init_from: str) -> tuple[str, str]:
    """(the Orbax PyTree directory holding params/batch_stats, the model it holds)."""
    if is_converted(init_from):
        with open(os.path.join(init_from, 'convert.json')) as f:
            info = json.load(f)
        return os.path.abspath(os.path.join(init_from, CHECKPOINT_DIR)), info['model']
    with open(os.path.join(init_from, 'config.json')) as f:
        model = json.load(f)['model']['name']
    directory = os.path.join(init_from, 'checkpoints')
    saved = sorted((int(name) for name in os.listdir(directory) if name.isdigit()), reverse=True)
    if not saved:
        raise InitFromError(f'train.init_from={init_from} has no checkpoint yet')
    return os.path.abspath(os.path.join(directory, str(saved[0]), 'state')), model


def load_initial_variables(init_from: str, model_name: str, params: Any, batch_stats: Any,
                           head: set[str]) -> tuple[Any, Any]:
    """(params, batch_stats) of this run with every leaf taken from `init_from` except a head of
    another shape, which keeps `params`' fresh values. Raises InitFromError (one line) when any
    other leaf is missing or misshapen."""
    path, saved_model = _saved_tree_path(init_from)
    with ocp.PyTreeCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(path)
        metadata = getattr(metadata, 'item_metadata', None) or metadata
        saved_shapes = {key: tuple(leaf.shape) for key, leaf in flatten(
            {k: metadata[k] for k in ('params', 'batch_stats') if k in metadata}).items()}
        ours = flatten({'params': params, 'batch_stats': batch_stats})
        fresh, problems = [], []
        for key, leaf in ours.items():
            saved = saved_shapes.get(key)
            if saved == tuple(leaf.shape):
                continue
            if key.split('/', 1)[1] in head:
                fresh.append(key)
            else:
                problems.append(f'{key} is {saved or "absent"} there, {tuple(leaf.shape)} here')
        extra = sorted(set(saved_shapes) - set(ours))
        if problems or extra:
            first = problems[0] if problems else f'{extra[0]} there has no place here'
            raise InitFromError(
                f'train.init_from={init_from} holds {saved_model}, which does not fit '
                f'{model_name}: {first} ({len(problems) + len(extra)} mismatched leaves)')
        target = unflatten({key: jax.ShapeDtypeStruct(shape, np.float32)
                            for key, shape in saved_shapes.items()
                            if key not in fresh})
        restored = flatten(checkpointer.restore(path, args=ocp.args.PyTreeRestore(
            item=target, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target))))
    if fresh:
        logging.warning('init_from %s: new head for this num_classes, freshly initialised: %s',
                        init_from, ', '.join(sorted(fresh)))
    logging.info('init_from %s: %d of %d leaves loaded', init_from, len(restored), len(ours))
    merged = {key: restored.get(key, value) for key, value in ours.items()}
    tree = unflatten(merged)
    return tree['params'], tree.get('batch_stats', {})
