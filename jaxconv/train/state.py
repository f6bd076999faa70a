"""The train state: one pytree that is jitted, donated, checkpointed and restored whole."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

# Every stochastic layer draws from one of these streams; all derive from the config seed.
RNG_STREAMS = ('dropout', 'drop_path')

# The init runs once, so its program is compiled without backend (LLVM) optimisation: on XLA:CPU
# that compiles a small ResNet's initialisers in 2 s instead of 10-15 s (EfficientNet-B0: 9 s, not
# 20 s). The draws are the same up to float rounding (1 ulp in about 4% of the weights).
INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0}


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken, also the data position on resume.
    params: Any
    batch_stats: Any  # BatchNorm running statistics; {} for models without BatchNorm.
    opt_state: optax.OptState
    # Exponential moving averages of params and of BatchNorm statistics (timm's ModelEmaV3, the
    # TF ResNet-RS reference); {} when train.ema_decay is 0.
    ema_params: Any
    ema_batch_stats: Any


def stream_rngs(key: jax.Array) -> dict[str, jax.Array]:
    """One key per stochastic stream, split from `key`."""
    return dict(zip(RNG_STREAMS, jax.random.split(key, len(RNG_STREAMS)), strict=True))


def init_train_state(key: jax.Array, model: nn.Module, tx: optax.GradientTransformation,
                     image_shape: tuple[int, int, int], with_ema: bool = False,
                     variables: tuple[Any, Any] | None = None) -> TrainState:
    """Initialises variables in training mode, so training-only heads (aux logits) get params;
    `variables`, (params, batch_stats), replaces them (fine-tuning's init_from).

    The averages start equal to the initial variables, as TF's ExponentialMovingAverage does.
    """
    if variables is None:
        params_key, streams_key = jax.random.split(key)
        dummy = jnp.zeros((1, *image_shape), jnp.float32)
        initial = model.init({'params': params_key, **stream_rngs(streams_key)}, dummy,
                             train=True)
        params, batch_stats = initial['params'], initial.get('batch_stats', {})
    else:
        params, batch_stats = variables
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), ema_params=params if with_ema else {},
                      ema_batch_stats=batch_stats if with_ema else {})


def jit_init(init_fn: Any, out_shardings: Any) -> Any:
    """`init_fn` jitted into `out_shardings`, compiled cheaply (INIT_COMPILER_OPTIONS)."""
    return jax.jit(init_fn, out_shardings=out_shardings, compiler_options=INIT_COMPILER_OPTIONS)


def count_params(params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
