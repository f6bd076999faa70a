"""Throughput of the jitted train step and of the input pipeline; prints a Markdown table.

  python benchmarks/train_throughput.py [--models lenet5,resnet18] [--batch 64] [--steps 50]

The step is timed on synthetic data already on the devices (so it measures the model, the
optimizer and the sharding, not the input), after one warm-up call that compiles it. The pipeline
is timed separately, producing the default job's digits batches. Numbers are wall-clock on this
machine; README records the ones measured for its table.
"""

import argparse
import functools
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from configs import lenet5_digits  # noqa: E402
from jaxconv import models  # noqa: E402
from jaxconv.train import optim, steps  # noqa: E402
from jaxconv.train.state import init_train_state  # noqa: E402


def step_throughput(name: str, batch: int, resolution: int, channels: int, num_steps: int) -> dict:
    """Images per second of `train_step` for model `name` over all local devices."""
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    model = models.create_model(name, num_classes=10)
    config = lenet5_digits.get_config().optim
    tx = optim.make_optimizer(config, optim.learning_rate_schedule(
        config, global_batch_size=batch, total_steps=10 * num_steps, steps_per_epoch=num_steps))
    init = functools.partial(init_train_state, model=model, tx=tx,
                             image_shape=(resolution, resolution, channels))
    state = jax.jit(init, out_shardings=replicated)(jax.random.key(0))
    images = jax.device_put(jnp.zeros((batch, resolution, resolution, channels)), sharded)
    labels = jax.device_put(jnp.zeros((batch,), jnp.int32), sharded)
    step = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, label_smoothing=0.0,
                                     aux_loss_weight=0.3),
                   in_shardings=(replicated, replicated, sharded, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))
    sums = jax.device_put(steps.zero_metrics(steps.TRAIN_METRICS), replicated)
    key = jax.device_put(jax.random.key(1), replicated)
    start = time.perf_counter()
    state, sums = step(state, sums, {'image': images, 'label': labels}, key)
    jax.block_until_ready(sums)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(num_steps):
        state, next_sums = step(state, sums, {'image': images, 'label': labels}, key)
        jax.block_until_ready(sums)  # At most two steps queued, as in loop.py.
        sums = next_sums
    jax.block_until_ready(sums)
    seconds = time.perf_counter() - start
    return {'what': f'train step: {name} {resolution}px', 'batch': batch,
            'devices': jax.device_count(), 'img_per_sec': batch * num_steps / seconds,
            'ms_per_step': 1000 * seconds / num_steps, 'compile_s': compile_seconds}


def pipeline_throughput(batch: int, num_batches: int) -> dict:
    """Images per second the digits training pipeline delivers as numpy batches."""
    from jaxconv.data import pipeline

    config = lenet5_digits.get_config().dataset
    config.data_dir = os.path.join(tempfile.gettempdir(), 'jaxconv_bench_tfds')
    builder = pipeline.get_builder(config)
    batches = pipeline.train_batches(builder, config, seed=0, global_batch_size=batch)
    next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(batches)
    seconds = time.perf_counter() - start
    return {'what': 'input pipeline: digits 32px', 'batch': batch, 'devices': '-',
            'img_per_sec': batch * num_batches / seconds,
            'ms_per_step': 1000 * seconds / num_batches, 'compile_s': 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default='lenet5')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--steps', type=int, default=100)
    args = parser.parse_args()
    rows = [pipeline_throughput(args.batch, args.steps)]
    for name in args.models.split(','):
        channels, resolution = (1, 32) if name == 'lenet5' else (3, 32)
        rows.append(step_throughput(name, args.batch, resolution, channels, args.steps))
    print(f'jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPU cores, '
          f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
    print('| what | global batch | devices | img/s | ms/step | compile s |')
    print('|---|---:|---:|---:|---:|---:|')
    for row in rows:
        print(f'| {row["what"]} | {row["batch"]} | {row["devices"]} | {row["img_per_sec"]:,.0f} '
              f'| {row["ms_per_step"]:.2f} | {row["compile_s"]:.1f} |')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
