"""The trainer: `train_and_evaluate(config, workdir)`, read top to bottom in sections.

config -> data (this process's shard) -> global arrays on a 1-D `data` mesh -> jitted train step
(state donated, batch sharded, params replicated) -> metrics summed on device, fetched every
`log_every` steps -> metrics.jsonl / W&B -> Orbax checkpoint every `checkpoint_every` steps and on
SIGTERM/SIGINT -> eval -> summary.json. It knows no model by name.
"""

import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxconv import models
from jaxconv.data import pipeline, preprocess
from jaxconv.train import cost, optim, steps
from jaxconv.train.checkpoint import Checkpointer
from jaxconv.train.state import TrainState, count_params, init_train_state
from jaxconv.train.writer import MetricWriter

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class NonFiniteLossError(RuntimeError):
    """The loss or gradients became NaN or inf; the run stops without saving."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was saved, and re-running resumes from it."""

    def __init__(self, step: int, signum: int):
        super().__init__(f'interrupted by {signal.Signals(signum).name} at step {step}; '
                         'checkpoint saved, re-run the same command to resume')
        self.step = step
        self.signum = signum


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
            raise ValueError(f'train.{key}={train[key]} must be a multiple of the {num_devices} '
                             'devices (and processes) in the mesh')
    examples_per_epoch = meta.num_train_examples * jax.process_count()
    if train.steps is None:
        if train.epochs is None or train.epochs <= 0:
            raise ValueError('set train.steps or train.epochs to a positive number')
        train.steps = math.ceil(train.epochs * examples_per_epoch / train.batch_size)
    elif train.steps <= 0:
        raise ValueError(f'train.steps={train.steps} must be positive')
    train.epochs = train.steps * train.batch_size / examples_per_epoch
    return config


def _write_config(workdir: str, config: ml_collections.ConfigDict, start_step: int) -> None:
    """Writes config.json; a different earlier one is kept under a name with its last step."""
    path = os.path.join(workdir, 'config.json')
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if os.path.exists(path):
        with open(path) as f:
            previous = f.read()
        if previous == text:
            return
        os.replace(path, os.path.join(workdir, f'config.until_step_{start_step}.json'))
        logging.warning('config differs from this workdir\'s earlier one (kept as '
                        'config.until_step_%d.json)', start_step)
    with open(path, 'w') as f:
        f.write(text)


def _mix_settings(train: ml_collections.ConfigDict, steps_per_epoch: float) -> dict | None:
    """The train step's mixup/CutMix settings, or None when both are off."""
    if train.mixup_alpha <= 0 and train.cutmix_alpha <= 0:
        return None
    off_step = -1 if train.mix_off_epoch < 0 else round(train.mix_off_epoch * steps_per_epoch)
    return {'mixup_alpha': train.mixup_alpha, 'cutmix_alpha': train.cutmix_alpha,
            'prob': train.mix_prob, 'switch_prob': train.mix_switch_prob, 'off_step': off_step}


def _update_best(record: dict, eval_metrics: dict[str, float], step: int) -> None:
    """Keeps best_top1/top5/step, and best_ema_* for the averaged weights, in the record."""
    for prefix in ('', 'ema_'):
        if f'{prefix}top1' not in eval_metrics:
            continue
        best = record.get(f'best_{prefix}top1')
        if best is None or eval_metrics[f'{prefix}top1'] > best:
            record.update({f'best_{prefix}top1': eval_metrics[f'{prefix}top1'],
                           f'best_{prefix}top5': eval_metrics[f'{prefix}top5'],
                           f'best_{prefix}step': step})


def _is_time(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


class _StopSignals:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def evaluate(eval_fn, variables: Any, eval_data: pipeline.EvalData,
             batch_sharding: NamedSharding, replicated: NamedSharding) -> dict[str, float]:
    """Top-1, top-5 and loss over the whole eval split, exactly once."""
    sums = jax.device_put(steps.zero_metrics(steps.EVAL_METRICS), replicated)
    for batch in eval_data.dataset.as_numpy_iterator():
        batch = jax.make_array_from_process_local_data(batch_sharding, batch)
        sums = eval_fn(variables, sums, batch)
    sums = jax.device_get(sums)
    if round(float(sums['count'])) != eval_data.num_examples:
        raise RuntimeError(f'eval saw {sums["count"]} examples, expected {eval_data.num_examples}')
    return steps.summarize(sums)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       devices: list | None = None) -> dict[str, Any]:
    """Trains and evaluates `config` in `workdir`, resuming from its newest checkpoint."""
    wall_start = time.time()
    os.makedirs(workdir, exist_ok=True)

    # ---- Data ------------------------------------------------------------------------------
    builder = pipeline.get_builder(config.dataset)
    meta = pipeline.dataset_meta(builder, config.dataset)
    splits = pipeline.data_splits(builder, config.dataset)  # With a minival, test waits to the end.

    # ---- Mesh ------------------------------------------------------------------------------
    devices = devices if devices is not None else jax.devices()
    mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P('data'))
    config = resolve_config(config, meta, len(devices))
    total_steps = config.train.steps
    global_batch = config.train.batch_size

    # ---- Model and optimizer ---------------------------------------------------------------
    if config.model.compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f'unknown model.compute_dtype {config.model.compute_dtype!r}; valid: '
                         f'{", ".join(COMPUTE_DTYPES)}')
    model = models.create_model(config.model.name, num_classes=config.model.num_classes,
                                dtype=COMPUTE_DTYPES[config.model.compute_dtype],
                                **config.model.kwargs)
    steps_per_epoch = meta.num_train_examples * jax.process_count() / global_batch
    schedule = optim.learning_rate_schedule(config.optim, global_batch_size=global_batch,
                                            total_steps=total_steps,
                                            steps_per_epoch=steps_per_epoch)
    tx = optim.make_optimizer(config.optim, schedule)
    image_shape = (config.dataset.image_size, config.dataset.image_size, meta.channels)
    root_key = jax.random.key(config.seed)
    init_key, step_key = jax.random.split(root_key)

    # ---- Initialise into place, or restore -------------------------------------------------
    init_fn = functools.partial(init_train_state, model=model, tx=tx, image_shape=image_shape,
                                with_ema=config.train.ema_decay > 0)
    abstract_state = jax.eval_shape(init_fn, init_key)
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state)
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    restored = checkpointer.restore_newest(abstract_state)
    if restored is None:
        state = jax.jit(init_fn, out_shardings=replicated)(init_key)
        record = {'wall_seconds': 0.0}
    else:
        state, record = restored
        logging.warning('resuming from the checkpoint at step %d', int(state.step))
    start_step = int(state.step)
    num_params = count_params(state.params)
    if jax.process_index() == 0:
        _write_config(workdir, config, start_step)

    # ---- Steps -----------------------------------------------------------------------------
    train_fn = jax.jit(
        functools.partial(steps.train_step, model=model, tx=tx,
                          label_smoothing=config.train.label_smoothing,
                          aux_loss_weight=config.train.aux_loss_weight,
                          ema_decay=config.train.ema_decay, ema_warmup=config.train.ema_warmup,
                          mix=_mix_settings(config.train, steps_per_epoch)),
        in_shardings=(replicated, replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated), donate_argnums=(0,))
    eval_fn = jax.jit(functools.partial(steps.eval_step, model=model),
                      in_shardings=(replicated, replicated, batch_sharding),
                      out_shardings=replicated, donate_argnums=(1,))
    eval_data = pipeline.eval_batches(builder, config.dataset, split=splits.during_training,
                                      global_batch_size=config.train.eval_batch_size)
    step_key = jax.device_put(step_key, replicated)

    def run_eval(state: TrainState, data: pipeline.EvalData = eval_data) -> dict[str, float]:
        """Raw weights' metrics, and with EMA on, the averaged weights' as ema_loss, ema_top1..."""
        variables = {'params': state.params, 'batch_stats': state.batch_stats}
        metrics = evaluate(eval_fn, variables, data, batch_sharding, replicated)
        if config.train.ema_decay > 0:
            averaged = {'params': state.ema_params, 'batch_stats': state.ema_batch_stats}
            ema = evaluate(eval_fn, averaged, data, batch_sharding, replicated)
            metrics.update({f'ema_{name}': value for name, value in ema.items()})
        return metrics

    # ---- Loop ------------------------------------------------------------------------------
    writer = MetricWriter(workdir, config)
    batches = pipeline.train_batches(builder, config.dataset, seed=config.seed,
                                     global_batch_size=global_batch, start_step=start_step)
    earlier_wall_seconds = record['wall_seconds']  # Spent by earlier runs in this workdir.
    throughput = cost.Throughput(record)

    def new_sums() -> steps.Metrics:
        return jax.device_put(steps.zero_metrics(steps.TRAIN_METRICS), replicated)

    def check_finite(sums_host: dict, step: int) -> None:
        if sums_host['nonfinite_steps'] > 0 or not np.isfinite(sums_host['loss_sum']):
            raise NonFiniteLossError(
                f'loss or gradients became NaN/inf between steps {window_start} and {step}; '
                f'stopped without saving (newest checkpoint: step '
                f'{checkpointer.manager.latest_step()}); lower optim.base_lr or raise '
                'optim.warmup_epochs')

    sums, window_start, window_time = new_sums(), start_step, time.time()
    eval_metrics = None
    progress = tqdm.tqdm(total=total_steps, initial=start_step, unit='step', dynamic_ncols=True,
                         disable=jax.process_index() != 0)
    try:
        with _StopSignals() as stop:
            for step in range(start_step + 1, total_steps + 1):
                batch = jax.make_array_from_process_local_data(batch_sharding, next(batches))
                # Catches any implicit host<->device copy sneaking into the hot path.
                with jax.transfer_guard('disallow'):
                    state, next_sums = train_fn(state, sums, batch, step_key)
                # Wait for the previous step (this one's input) while this one runs: at most two
                # steps are queued, which bounds memory held by queued batches and keeps XLA:CPU's
                # virtual devices from deadlocking in collectives when many programs pile up.
                jax.block_until_ready(sums)
                sums = next_sums
                progress.update(1)

                if _is_time(step, config.train.log_every, total_steps):
                    sums_host = jax.device_get(sums)  # The only device-to-host copy in training.
                    check_finite(sums_host, step)
                    window_seconds = time.time() - window_time
                    throughput.add_window(float(sums_host['count']), step - window_start,
                                          window_seconds)
                    train_metrics = {
                        **steps.summarize(sums_host),
                        'lr': float(schedule(step - 1)),  # The LR the last step used.
                        'img_per_sec': float(sums_host['count']) / window_seconds,
                    }
                    writer.write(step, 'train', train_metrics)
                    progress.set_postfix(loss=f'{train_metrics["loss"]:.4f}',
                                         img_s=f'{train_metrics["img_per_sec"]:.0f}')
                    sums, window_start, window_time = new_sums(), step, time.time()

                if _is_time(step, config.train.eval_every, total_steps):
                    eval_start = time.time()
                    eval_metrics = run_eval(state)
                    writer.write(step, 'eval', eval_metrics, dataset_split=eval_data.split)
                    _update_best(record, eval_metrics, step)
                    progress.write(f'step {step}: ' + ', '.join(
                        f'{name} {value:.4f}' for name, value in eval_metrics.items()))
                    window_time += time.time() - eval_start  # Keep eval time out of img/s.

                interrupted = stop.signum is not None
                if interrupted or _is_time(step, config.train.checkpoint_every, total_steps):
                    check_finite(jax.device_get(sums), step)  # Never save a diverged state.
                    record['wall_seconds'] = earlier_wall_seconds + time.time() - wall_start
                    checkpointer.save(step, state, record)
                if interrupted:
                    checkpointer.wait()
                    raise TrainingInterrupted(step, stop.signum)
        if eval_metrics is None:  # Re-run of a finished workdir: evaluate what is there.
            eval_metrics = run_eval(state)
        final_metrics = eval_metrics
        if splits.minival:  # Every selection used minival; now the test split, read once.
            test_data = pipeline.eval_batches(builder, config.dataset, split=splits.test,
                                              global_batch_size=config.train.eval_batch_size)
            final_metrics = run_eval(state, test_data)
            writer.write(total_steps, 'eval', final_metrics, dataset_split=splits.test,
                         wandb_section='test')

        summary = {
            'model': config.model.name,
            'dataset': config.dataset.name,
            'params': num_params,
            'steps': total_steps,
            'epochs': config.train.epochs,
            'global_batch_size': global_batch,
            'devices': len(devices),
            **{f'final_{name}': value for name, value in final_metrics.items()},
            **{name: value for name, value in record.items() if name.startswith('best_')},
            **({f'minival_{name}': value for name, value in eval_metrics.items()}
               if splits.minival else {}),
            'splits': dataclasses.asdict(splits),  # TFDS expressions of train, minival, test.
            'metrics_from': {'final_*': 'test', 'best_*': 'minival' if splits.minival else 'test',
                             **({'minival_*': 'minival'} if splits.minival else {})},
            **cost.model_facts(model, config.dataset.image_size, meta.channels),
            **throughput.summary(),
            'wall_seconds': earlier_wall_seconds + time.time() - wall_start,
            'eval_preprocessing': preprocess.describe_eval(config.dataset),
            'config': json.loads(config.to_json_best_effort()),  # Every switch, beside the result.
        }
        writer.write_summary(summary)
    finally:
        progress.close()
        checkpointer.wait()
        checkpointer.close()
        writer.close()
    return summary
