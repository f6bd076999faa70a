"""One model's figures in JAX: size, multiply-adds, compile times, throughput, memory, checks.

Three jitted steps are timed on the same synthetic batch, already on the devices:

- the trainer's train step (`adapter.trainer_train_step`: the full state with optimizer, EMA and
  BatchNorm statistics, label smoothing, metric sums), with the compiled-step checks;
- a minimal hand-written Flax step of the same model (cross-entropy, SGD with momentum, new
  BatchNorm statistics; nothing else), so trainer / minimal is the overhead jaxconv adds;
- the trainer's eval step.

Each is compiled ahead of time (`lower().compile()`, timed), then called `warmup` times untimed and
`steps` times timed, each call waited for with `block_until_ready`. Throughput is reported as the
median over the timed calls with the 10th-90th percentile range as the spread.
"""

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxconv.bench import adapter, checks, hlo
from jaxconv.models.flops import count_macs

_PROBE_RESOLUTIONS = (32, 64, 96, 128, 160, 224, 299)


def abstract_variables(model: nn.Module, resolution: int, channels: int) -> dict:
    """Shapes of the variables as training initialises them (aux heads included), no compute."""
    image = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    rngs = {name: jax.random.key(0) for name in ('params', 'dropout', 'drop_path')}
    return jax.eval_shape(lambda x: model.init(rngs, x, train=True), image)


def smallest_resolution(model: nn.Module, channels: int, at_least: int) -> int:
    """The smallest probe resolution >= `at_least` that the model runs on (for smoke runs)."""
    error = None
    for resolution in (r for r in _PROBE_RESOLUTIONS if r >= at_least):
        try:
            abstract_variables(model, resolution, channels)
            return resolution
        except Exception as e:  # Too small: a pooling or valid conv runs out of pixels.
            error = e
    raise ValueError(f'runs on none of the resolutions {_PROBE_RESOLUTIONS}: {error}')


def forward_macs_xla(model: nn.Module, variables: Any, resolution: int, channels: int) -> float:
    """Multiply-adds per image by XLA's cost analysis of the eval forward (flops / 2).

    Counted on the lowered, not yet optimised program, so it needs no compile. Unlike
    `count_macs` it also counts BatchNorm, activations and additions, and leaves out kernel taps
    that fall on padding.
    """
    image = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    lowered = jax.jit(functools.partial(model.apply, train=False)).lower(variables, image)
    return lowered.cost_analysis()['flops'] / 2


def static_figures(name: str, *, resolution: int, channels: int, num_classes: int) -> dict:
    """Parameters and multiply-adds (analytic and XLA's), without compiling or running."""
    config = adapter.bench_config(name, batch=1, resolution=resolution, dtype='float32',
                                  num_classes=num_classes)
    model = adapter.build_model(config)
    variables = abstract_variables(model, resolution, channels)
    eval_variables = {k: v for k, v in variables.items() if k in ('params', 'batch_stats')}
    return {
        'params': sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params'])),
        'macs': count_macs(model, resolution, channels),
        'xla_macs': forward_macs_xla(model, eval_variables, resolution, channels),
    }


# ---- Timing --------------------------------------------------------------------------------

def compile_step(fn: Callable, args: tuple) -> tuple[Any, Any, float]:
    """(lowered, compiled, seconds) of tracing, lowering and compiling `fn` for `args`.

    Later calls of `fn` with arguments of the same shapes reuse this executable.
    """
    start = time.perf_counter()
    lowered = fn.lower(*args)
    compiled = lowered.compile()
    return lowered, compiled, time.perf_counter() - start


def time_calls(fn: Callable, args: tuple, advance: Callable, *, warmup: int,
               steps: int) -> tuple[list[float], tuple]:
    """Seconds of each of `steps` calls after `warmup` untimed ones; and the next arguments."""
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        outputs = fn(*args)
        jax.block_until_ready(outputs)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        args = advance(args, outputs)
    return times, args


def throughput(times: list[float], batch: int) -> dict:
    """Images/s: median over the calls, and the 10th-90th percentile range."""
    median, fast, slow = np.median(times), np.percentile(times, 10), np.percentile(times, 90)
    return {'img_per_sec': batch / median, 'img_per_sec_p10': batch / slow,
            'img_per_sec_p90': batch / fast, 'step_ms': 1000 * median, 'steps': len(times)}


# ---- The minimal step ----------------------------------------------------------------------

def minimal_train_step(params: Any, batch_stats: Any, opt_state: Any, images: jax.Array,
                       labels: jax.Array, key: jax.Array, *, model: nn.Module,
                       tx: optax.GradientTransformation) -> tuple:
    """What one would write by hand: mean cross-entropy, an optax update, new BN statistics."""
    def loss_fn(params):
        logits, updated = model.apply(
            {'params': params, 'batch_stats': batch_stats}, images, train=True,
            mutable=['batch_stats'], rngs={'dropout': key, 'drop_path': key})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                               labels).mean()
        return loss, updated.get('batch_stats', {})

    (loss, new_batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_batch_stats, opt_state, loss


def _minimal_step(model: nn.Module, state: Any, batch: dict,
                  mesh: jax.sharding.Mesh) -> tuple[Callable, tuple, Callable]:
    """The minimal step jitted like the trainer's (donated state), its arguments and advance."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
    # Copies: the trainer's state stays intact for the eval step.
    params = jax.tree.map(jnp.copy, state.params)
    batch_stats = jax.tree.map(jnp.copy, state.batch_stats)
    opt_state = jax.jit(tx.init, out_shardings=replicated)(params)
    fn = jax.jit(functools.partial(minimal_train_step, model=model, tx=tx),
                 in_shardings=(replicated,) * 3 + (sharded, sharded, replicated),
                 out_shardings=replicated, donate_argnums=(0, 1, 2))
    key = jax.device_put(jax.random.key(2), replicated)
    args = (params, batch_stats, opt_state, batch['image'], batch['label'], key)
    return fn, args, lambda args, outputs: (*outputs[:3], *args[3:])


# ---- The checked run ----------------------------------------------------------------------

def checked_run(fn: Callable, args: tuple, advance: Callable, *, warmup: int, steps: int,
                dtype: str, params_of: Callable, param_shapes: list[tuple[int, ...]]) -> dict:
    """Compiles, checks and times a jitted step whose first argument is its donated state.

    The first call runs under `jax.transfer_guard('disallow')` and is followed by the donation
    check; then `warmup - 1` untimed and `steps` timed calls, all counted for recompiles. Returns
    compile seconds, call times, XLA's flop count per device, memory figures, the checks and the
    arguments for a next call (`next_args`).
    """
    with checks.CompileCounter() as compiles:
        lowered, compiled, compile_s = compile_step(fn, args)
        state_leaves = jax.tree.leaves(args[0])
        guard_error = None
        try:
            with jax.transfer_guard('disallow'):
                outputs = jax.block_until_ready(fn(*args))
        except Exception as e:  # An implicit transfer: the call did not run; run it unguarded.
            guard_error = _first_line(e)
            outputs = jax.block_until_ready(fn(*args))
        donated = checks.state_donated(state_leaves)
        args = advance(args, outputs)
        times, args = time_calls(fn, args, advance, warmup=warmup - 1, steps=steps)
    module = hlo.parse(compiled.as_text())
    stablehlo = lowered.as_text()
    return {
        'compile_s': compile_s, 'times': times, 'memory': _memory(compiled),
        'flops': (compiled.cost_analysis() or {}).get('flops', float('nan')),
        'checks': [checks.one_compile(compiles.count, 1 + warmup - 1 + steps),
                   checks.no_host_transfer(module, guard_error),
                   donated,
                   checks.precision(params_of(args), stablehlo, module, dtype),
                   checks.no_layout_transposes(stablehlo, module, param_shapes)],
        'next_args': args,
    }


# ---- One model -----------------------------------------------------------------------------

def _first_line(error: BaseException) -> str:
    return f'{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ""}'


def _memory(compiled: Any) -> dict:
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    # Arguments and outputs live together except where an output reuses a donated argument;
    # temporaries are XLA's scratch. (`peak_memory_in_bytes` is beside it: XLA:CPU fills it with
    # the arguments only.)
    peak = (stats.argument_size_in_bytes + stats.output_size_in_bytes
            - stats.alias_size_in_bytes + stats.temp_size_in_bytes)
    return {'peak_bytes': int(peak), 'temp_bytes': int(stats.temp_size_in_bytes),
            'argument_bytes': int(stats.argument_size_in_bytes),
            'xla_peak_memory_bytes': int(getattr(stats, 'peak_memory_in_bytes', 0))}


def benchmark_model(name: str, *, batch: int, resolution: int, dtype: str, steps: int,
                    warmup: int, channels: int = 3, num_classes: int = 1000,
                    devices: list | None = None) -> dict:
    """Every figure of one model at one batch size, resolution and compute dtype."""
    mesh = adapter.data_mesh(devices)
    row = {'model': name, 'batch': batch, 'resolution': resolution, 'dtype': dtype,
           'devices': mesh.size, 'device_kind': mesh.devices.flat[0].device_kind,
           **static_figures(name, resolution=resolution, channels=channels,
                            num_classes=num_classes)}
    config = adapter.bench_config(name, batch=batch, resolution=resolution, dtype=dtype,
                                  num_classes=num_classes)
    model = adapter.build_model(config)
    tx = adapter.build_optimizer(config)
    state = adapter.init_state(config, model, tx, mesh, channels)
    data = adapter.synthetic_batch(batch, resolution, channels, num_classes, mesh)
    param_shapes = [x.shape for x in jax.tree.leaves(state.params)]

    # ---- The trainer's train step, with the checks.
    train_fn = adapter.trainer_train_step(config, model, tx, mesh)
    args = adapter.train_step_args(state, data, mesh)
    del state  # Donated to the step from here on.
    run = checked_run(train_fn, args, adapter.next_train_args, warmup=warmup, steps=steps,
                      dtype=dtype, params_of=lambda args: args[0].params,
                      param_shapes=param_shapes)
    args = run.pop('next_args')
    row['compile_train_s'] = run['compile_s']
    row['train'] = throughput(run['times'], batch)
    row['memory'] = run['memory']
    median_s = float(np.median(run['times']))
    row['xla_train_flops_per_device'] = run['flops']
    row['achieved_flops'] = run['flops'] * mesh.size / median_s
    row['model_flops'] = 6 * row['macs'] * batch / median_s  # Forward 2 x MACs, backward 2x that.
    row['checks'] = [vars(check) for check in run['checks']]

    # ---- The trainer's eval step.
    eval_fn = adapter.trainer_eval_step(model, mesh)
    eval_args = adapter.eval_step_args(args[0], data, mesh)
    _, _, row['compile_eval_s'] = compile_step(eval_fn, eval_args)
    times, _ = time_calls(eval_fn, eval_args, adapter.next_eval_args, warmup=warmup, steps=steps)
    row['eval'] = throughput(times, batch)

    # ---- The minimal hand-written step.
    fn, minimal_args, advance = _minimal_step(model, args[0], data, mesh)
    del args
    _, _, row['compile_minimal_s'] = compile_step(fn, minimal_args)
    times, _ = time_calls(fn, minimal_args, advance, warmup=warmup, steps=steps)
    row['minimal'] = throughput(times, batch)
    row['trainer_over_minimal'] = row['train']['img_per_sec'] / row['minimal']['img_per_sec']
    return row
