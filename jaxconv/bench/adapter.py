"""The one place the benchmark touches the trainer's APIs.

The benchmark must time the trainer's own step, not a copy of it, so it builds the model, the
optimizer, the train state and the jitted steps exactly as `jaxconv/train/loop.py` does (same
config keys, same `steps.train_step` / `steps.eval_step`, same shardings and donation). When the
trainer's step signatures, the batch layout (e.g. uint8 images normalised on device) or the
pipeline entry points change, this file is the only one to follow them.
"""

import functools
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import common
from jaxconv import models
from jaxconv.train import optim, steps
from jaxconv.train.state import TrainState, init_train_state, jit_init

# The trainer's names for compute dtypes (loop.py's COMPUTE_DTYPES); params stay float32.
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Schedules need a length; the benchmark never runs this long, so the LR stays near its warmup.
_NOMINAL_STEPS = 10_000


def bench_config(name: str, *, batch: int, resolution: int, dtype: str,
                 num_classes: int) -> ml_collections.ConfigDict:
    """The trainer's config for a benchmark run: the base recipe with every costly switch on.

    EMA of params and BatchNorm statistics and label smoothing are on, so the state and the step
    are the full ones a ResNet-RS / EfficientNet recipe trains with.
    """
    config = common.get_config()
    config.model.name = name
    config.model.num_classes = num_classes
    config.model.compute_dtype = dtype
    config.dataset.image_size = resolution
    config.train.batch_size = batch
    config.train.steps = _NOMINAL_STEPS
    config.train.label_smoothing = 0.1
    config.train.ema_decay = 0.9999
    config.optim.nesterov = True
    return config


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    return models.create_model(config.model.name, num_classes=config.model.num_classes,
                               dtype=DTYPES[config.model.compute_dtype], **config.model.kwargs)


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    schedule = optim.learning_rate_schedule(
        config.optim, global_batch_size=config.train.batch_size, total_steps=config.train.steps,
        steps_per_epoch=config.train.steps / 100)
    return optim.make_optimizer(config.optim, schedule)


def data_mesh(devices: list | None = None) -> jax.sharding.Mesh:
    """The trainer's 1-D `data` mesh over `devices` (default: every device JAX sees)."""
    return jax.sharding.Mesh(np.asarray(devices if devices is not None else jax.devices()),
                             ('data',))


def init_state(config: ml_collections.ConfigDict, model: nn.Module,
               tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
               channels: int) -> TrainState:
    """The full train state, initialised into place (replicated), as loop.py does.

    The key is an RBG one: the values are as random, and XLA:CPU compiles the initialisers about
    twice as fast as with the default Threefry (the init is not what is measured; the step's own
    random streams keep the trainer's generator).
    """
    size = config.dataset.image_size
    init_fn = functools.partial(init_train_state, model=model, tx=tx,
                                image_shape=(size, size, channels),
                                with_ema=config.train.ema_decay > 0)
    key = jax.random.key(config.seed, impl='rbg')
    return jit_init(init_fn, NamedSharding(mesh, P()))(key)


def trainer_train_step(config: ml_collections.ConfigDict, model: nn.Module,
                       tx: optax.GradientTransformation, mesh: jax.sharding.Mesh) -> Callable:
    """`steps.train_step` jitted as in loop.py: state donated, batch sharded, rest replicated."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    return jax.jit(
        functools.partial(steps.train_step, model=model, tx=tx,
                          label_smoothing=config.train.label_smoothing,
                          aux_loss_weight=config.train.aux_loss_weight,
                          ema_decay=config.train.ema_decay, ema_warmup=config.train.ema_warmup),
        in_shardings=(replicated, replicated, sharded, replicated),
        out_shardings=(replicated, replicated), donate_argnums=(0,))


def trainer_eval_step(model: nn.Module, mesh: jax.sharding.Mesh) -> Callable:
    """`steps.eval_step` jitted as in loop.py (its metric sums donated)."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    return jax.jit(functools.partial(steps.eval_step, model=model),
                   in_shardings=(replicated, replicated, sharded),
                   out_shardings=replicated, donate_argnums=(1,))


def synthetic_batch(batch: int, resolution: int, channels: int, num_classes: int,
                    mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """A normalised float32 NHWC batch with labels and an all-ones eval mask, on the devices.

    Random values (not zeros), so that no backend can shortcut the arithmetic; drawn on the host,
    so that no random-number program has to be compiled for it.
    """
    rng = np.random.default_rng(0)
    return jax.device_put({
        'image': rng.standard_normal((batch, resolution, resolution, channels), np.float32),
        'label': rng.integers(0, num_classes, (batch,), np.int32),
        'mask': np.ones((batch,), np.int32),
    }, NamedSharding(mesh, P('data')))


def train_step_args(state: TrainState, batch: dict, mesh: jax.sharding.Mesh) -> tuple:
    """(state, metric sums, batch, root key): the arguments loop.py passes to the train step."""
    replicated = NamedSharding(mesh, P())
    sums = jax.device_put(steps.zero_metrics(steps.TRAIN_METRICS), replicated)
    key = jax.device_put(jax.random.key(1), replicated)
    return state, sums, {'image': batch['image'], 'label': batch['label']}, key


def next_train_args(args: tuple, outputs: tuple) -> tuple:
    """The next call's arguments: the step's new state and sums, the same batch and key."""
    return (*outputs, *args[2:])


def eval_step_args(state: TrainState, batch: dict, mesh: jax.sharding.Mesh) -> tuple:
    replicated = NamedSharding(mesh, P())
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    return variables, jax.device_put(steps.zero_metrics(steps.EVAL_METRICS), replicated), batch


def next_eval_args(args: tuple, outputs: Any) -> tuple:
    return args[0], outputs, args[2]


# ---- Input pipeline ------------------------------------------------------------------------

def imagenet_train_batches(builder: Any, *, batch: int, resolution: int, randaugment_layers: int,
                           randaugment_magnitude: float) -> Iterator[dict[str, np.ndarray]]:
    """The trainer's ImageNet training pipeline (`pipeline.train_batches`) over `builder`.

    Decode (only the crop window), Inception random-resized crop, flip, RandAugment in the
    reference's TF mode, normalise, batch: the `imagenet2012` preset with `image_size`
    `resolution`. Imported here, not at module level, so that the step benchmark never loads
    TensorFlow.
    """
    from jaxconv.data import pipeline

    config = common.get_config()
    common.set_dataset(config, 'imagenet2012')
    data = config.dataset
    data.image_size = resolution
    data.randaugment_layers = randaugment_layers
    data.randaugment_magnitude = randaugment_magnitude
    data.shuffle_buffer = 1024
    data.eval_split = data.train_split  # Only the train split is read; a folder may have no other.
    return pipeline.train_batches(builder, data, seed=0, global_batch_size=batch)
