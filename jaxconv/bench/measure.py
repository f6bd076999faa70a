"""One model's figures in JAX: size, multiply-adds, compile times, throughput, memory, checks.

Three jitted steps are timed on the same synthetic batch, already on the devices:

- the trainer's train step (`adapter.trainer_train_step`: the full state with optimizer, EMA and
  BatchNorm statistics, label smoothing, metric sums), with the compiled-step checks;
- a minimal hand-written Flax step of the same model (cross-entropy, SGD with momentum, new
  BatchNorm statistics; nothing else), so trainer / minimal is the overhead jaxconv adds;
- the trainer's eval step.

Each is compiled ahead of time (`lower().compile()`, timed), then called `warmup` times untimed and
`steps` times timed, each call waited for with `block_until_ready`; the two train steps take
turns. Throughput is the median over the timed calls, with the 10th-90th percentile range as the
spread.
"""

import functools
import math
import os
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
PROFILE_CALLS = 5  # Steps traced for a profile.


def abstract_variables(model: nn.Module, resolution: int, channels: int,
                       train: bool = True) -> dict:
    """Shapes of the variables, no compute; as training initialises them (training-only heads
    included), or with `train=False` only those inference uses."""
    image = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    rngs = {name: jax.random.key(0) for name in ('params', 'dropout', 'drop_path')}
    return jax.eval_shape(lambda x: model.init(rngs, x, train=train), image)


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


# ---- Steps --------------------------------------------------------------------------------

class Step:
    """A jitted step, its current arguments and the rule giving the next call's arguments.

    `advance(args, outputs)` feeds a step's outputs back (its donated state, its metric sums).
    Backend compilations while the step is compiled or called are counted in `compiles`.
    """

    def __init__(self, fn: Callable, args: tuple, advance: Callable):
        self.fn, self.args, self.advance = fn, args, advance
        self.compiles, self.calls = 0, 0

    def compile(self) -> tuple[Any, Any, float]:
        """(lowered, compiled, seconds of tracing, lowering and compiling) for the arguments.

        Later calls with arguments of the same shapes reuse this executable.
        """
        with checks.CompileCounter() as counter:
            start = time.perf_counter()
            lowered = self.fn.lower(*self.args)
            compiled = lowered.compile()
            seconds = time.perf_counter() - start
        self.compiles += counter.count
        return lowered, compiled, seconds

    def call(self) -> float:
        """Runs one step to completion; returns its wall-clock seconds."""
        with checks.CompileCounter() as counter:
            start = time.perf_counter()
            outputs = jax.block_until_ready(self.fn(*self.args))
            seconds = time.perf_counter() - start
        self.compiles += counter.count
        self.calls += 1
        self.args = self.advance(self.args, outputs)
        return seconds

    def guarded_call(self) -> str | None:
        """One call under `jax.transfer_guard('disallow')`; the guard's error, if it fired.

        An implicit transfer stops the call before it runs; it is then run unguarded.
        """
        try:
            with jax.transfer_guard('disallow'):
                self.call()
            return None
        except Exception as e:
            self.call()
            return _first_line(e)


def time_interleaved(steps: list[Step], *, warmup: int, count: int) -> list[list[float]]:
    """Seconds of `count` calls of each step after `warmup` untimed ones, taking turns.

    Taking turns exposes all steps to the same machine load, which keeps their ratio honest
    on a shared machine.
    """
    for _ in range(warmup):
        for step in steps:
            step.call()
    times = [[] for _ in steps]
    for _ in range(count):
        for step, seconds in zip(steps, times, strict=True):
            seconds.append(step.call())
    return times


def throughput(times: list[float], batch: int) -> dict:
    """Images/s: median over the calls, and the 10th-90th percentile range."""
    median, fast, slow = np.median(times), np.percentile(times, 10), np.percentile(times, 90)
    return {'img_per_sec': batch / median, 'img_per_sec_p10': batch / slow,
            'img_per_sec_p90': batch / fast, 'step_ms': 1000 * median, 'steps': len(times)}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else ""}'


def _memory(compiled: Any) -> dict:
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    # Arguments and outputs live together except where an output reuses a donated argument;
    # temporaries are XLA's scratch. (`peak_memory_in_bytes` is kept beside it: XLA:CPU reports
    # only the arguments there.)
    peak = (stats.argument_size_in_bytes + stats.output_size_in_bytes
            - stats.alias_size_in_bytes + stats.temp_size_in_bytes)
    return {'peak_bytes': int(peak), 'temp_bytes': int(stats.temp_size_in_bytes),
            'argument_bytes': int(stats.argument_size_in_bytes),
            'xla_peak_memory_bytes': int(getattr(stats, 'peak_memory_in_bytes', 0))}


# ---- The checks ----------------------------------------------------------------------------

def checked_start(step: Step, *, dtype: str, params_of: Callable,
                  param_shapes: list[tuple[int, ...]]) -> tuple[dict, Callable]:
    """Compiles `step` (first argument: its donated state) and makes its first, guarded call.

    Returns the compile figures, and a function that, once every call is made, gives the
    compiled-step checks (`checks.py`) of all of them.
    """
    lowered, compiled, compile_s = step.compile()
    state_leaves = jax.tree.leaves(step.args[0])
    guard_error = step.guarded_call()
    donated = checks.state_donated(state_leaves)
    stablehlo, compiled_text = lowered.as_text(), compiled.as_text()
    module = hlo.parse(compiled_text)
    figures = {'compile_s': compile_s, 'memory': _memory(compiled),
               'flops': (compiled.cost_analysis() or {}).get('flops', float('nan')),
               'compiled_text': compiled_text}

    def final_checks() -> list[checks.Check]:
        return [checks.one_compile(step.compiles, step.calls),
                checks.no_host_transfer(module, guard_error),
                donated,
                checks.precision(params_of(step.args), stablehlo, module, dtype),
                checks.no_layout_transposes(stablehlo, module, param_shapes)]

    return figures, final_checks


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


def _minimal_step(model: nn.Module, state: Any, batch: dict, mesh: jax.sharding.Mesh) -> Step:
    """The minimal step jitted like the trainer's (donated state, same shardings)."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
    # Copies: the trainer's state stays its own.
    params = jax.tree.map(jnp.copy, state.params)
    batch_stats = jax.tree.map(jnp.copy, state.batch_stats)
    opt_state = jax.jit(tx.init, out_shardings=replicated)(params)
    fn = jax.jit(functools.partial(minimal_train_step, model=model, tx=tx),
                 in_shardings=(replicated,) * 3 + (sharded, sharded, replicated),
                 out_shardings=replicated, donate_argnums=(0, 1, 2))
    key = jax.device_put(jax.random.key(2), replicated)
    return Step(fn, (params, batch_stats, opt_state, batch['image'], batch['label'], key),
                lambda args, outputs: (*outputs[:3], *args[3:]))


# ---- One model -----------------------------------------------------------------------------

def benchmark_model(name: str, *, batch: int, resolution: int, dtype: str, steps: int,
                    warmup: int, channels: int = 3, num_classes: int = 1000,
                    devices: list | None = None, profile_dir: str | None = None) -> dict:
    """Every figure of one model at one batch size, resolution and compute dtype.

    With `profile_dir`, also where the train step's time goes (`profile.py`), traced there.
    """
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

    # The trainer's train step (checked) and the minimal step, timed taking turns.
    train = Step(adapter.trainer_train_step(config, model, tx, mesh),
                 adapter.train_step_args(state, data, mesh), adapter.next_train_args)
    del state  # Donated to the step from here on.
    figures, final_checks = checked_start(train, dtype=dtype, params_of=lambda a: a[0].params,
                                          param_shapes=param_shapes)
    minimal = _minimal_step(model, train.args[0], data, mesh)
    row['compile_minimal_s'] = minimal.compile()[2]
    minimal.call()  # Its first call, as the trainer's guarded one: not timed.
    train_times, minimal_times = time_interleaved([train, minimal], warmup=warmup - 1,
                                                  count=steps)
    row['compile_train_s'] = figures['compile_s']
    row['train'] = throughput(train_times, batch)
    row['minimal'] = throughput(minimal_times, batch)
    row['trainer_over_minimal'] = row['train']['img_per_sec'] / row['minimal']['img_per_sec']
    row['memory'] = figures['memory']
    median_s = float(np.median(train_times))
    row['xla_train_flops_per_device'] = figures['flops']
    row['achieved_flops'] = figures['flops'] * mesh.size / median_s
    row['model_flops'] = 6 * row['macs'] * batch / median_s  # Forward 2 x MACs, backward 2x that.
    row['checks'] = [vars(check) for check in final_checks()]
    del minimal
    if profile_dir:
        from jaxconv.bench import profile

        row['profile'] = profile.jax_breakdown(
            train.call, figures['compiled_text'], param_shapes,
            calls=min(steps, PROFILE_CALLS), trace_dir=os.path.join(profile_dir, name))

    # The trainer's eval step.
    evaluate = Step(adapter.trainer_eval_step(model, mesh),
                    adapter.eval_step_args(train.args[0], data, mesh), adapter.next_eval_args)
    row['compile_eval_s'] = evaluate.compile()[2]
    (eval_times,) = time_interleaved([evaluate], warmup=warmup, count=steps)
    row['eval'] = throughput(eval_times, batch)
    return row
