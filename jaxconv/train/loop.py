"""The trainer: `train_and_evaluate(config, workdir)`, read top to bottom in sections.

config -> checks (nothing is written before they pass) -> data (this process's shard) -> a 1-D
`data` mesh -> workdir (one writer, the changed-config policy, restore) -> jitted train step
(state donated, uint8 batch sharded, params replicated) -> metrics summed on device, fetched
every `log_every` steps -> metrics.jsonl / W&B -> Orbax checkpoint every `checkpoint_every`
steps, on SIGTERM/SIGINT (at a step every process agrees on) and before any other fatal exit ->
eval -> summary.json. It knows no model by name. README's "What survives what" lists the
failures it survives, each with its test.
"""

import collections
import contextlib
import dataclasses
import functools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxconv import models
from jaxconv.data import pipeline, preprocess
from jaxconv.train import cost, finetune, optim, steps
from jaxconv.train import recipe as recipes
from jaxconv.train.checkpoint import (
    Checkpointer,
    CheckpointWriteError,
    NonFiniteStateError,
    StateMismatchError,
)
from jaxconv.train.lock import WorkdirLock, WorkdirLockedError
from jaxconv.train.preemption import StopAgreement, StopSignals
from jaxconv.train.recipe import ConfigError, Recipe, resolve_config
from jaxconv.train.state import TrainState, count_params, init_train_state, jit_init
from jaxconv.train.writer import MetricWriter, write_json_atomically

__all__ = ['ConfigChangedError', 'NonFiniteLossError', 'TrainingInterrupted', 'evaluate',
           'resolve_config', 'train_and_evaluate']

class NonFiniteLossError(RuntimeError):
    """The loss, gradients or updated weights became NaN or inf; the run stops without saving."""


class ConfigChangedError(ConfigError):
    """The config differs from the workdir's in a way the run was not allowed to continue with."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was saved, and re-running resumes from it."""

    def __init__(self, step: int, signum: int):
        super().__init__(f'interrupted by {signal.Signals(signum).name} at step {step}; '
                         'checkpoint saved, re-run the same command to resume')
        self.step = step
        self.signum = signum


def _write_config(workdir: str, config: ml_collections.ConfigDict, start_step: int) -> None:
    """Writes config.json; a different earlier one is kept under a name with its last step."""
    path = os.path.join(workdir, 'config.json')
    data = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) == data:
                return
        os.replace(path, os.path.join(workdir, f'config.until_step_{start_step}.json'))
        logging.warning('config differs from this workdir\'s earlier one (kept as '
                        'config.until_step_%d.json)', start_step)
    write_json_atomically(path, data, indent=2, sort_keys=True)


def _continue_record(record: dict | None, step: int, flat_config: dict,
                     global_batch: int) -> dict:
    """The record the run goes on with: a new one, or the checkpoint's, plus a config segment
    when this config differs from the one the checkpoint was trained under.

    A segment {'from_step': a, 'to_step': b, 'changed': {key: [before, after]}} says that steps
    a+1 ... b ran with the config changed as given (the first segment changes nothing).
    """
    if record is None:
        return {'wall_seconds': 0.0, 'examples_seen': 0, 'config': flat_config,
                'config_segments': [{'from_step': 0, 'to_step': 0, 'changed': {}}]}
    # Checkpoints written before these fields existed: one segment, one batch size throughout.
    record.setdefault('examples_seen', step * global_batch)
    record.setdefault('config_segments', [{'from_step': 0, 'to_step': step, 'changed': {}}])
    changed = recipes.diff_flat(record.get('config', flat_config), flat_config)
    if changed:
        record['config_segments'].append({'from_step': step, 'to_step': step, 'changed': {
            key: list(change) for key, change in changed.items()}})
    record['config'] = flat_config
    return record


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


def max_steps_in_flight(platform: str) -> int:
    """Steps the host may dispatch ahead of the device before it waits.

    XLA:CPU needs 1: with several programs queued, its virtual devices can deadlock in
    collectives. Elsewhere 2: the host waits on a step that is long finished whenever the device
    is the bottleneck (free), and queued batches still cannot pile up in device memory.
    """
    return 1 if platform == 'cpu' else 2


def _hold_workdir(workdir: str) -> WorkdirLock | None:
    """Process 0 takes the workdir lock (returned); every process fails if it could not."""
    lock, error = None, None
    if jax.process_index() == 0:
        try:
            lock = WorkdirLock(workdir)
            lock.acquire()
        except WorkdirLockedError as caught:
            error = caught
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        if not multihost_utils.broadcast_one_to_all(np.int32(error is None)) and error is None:
            error = WorkdirLockedError(f'process 0 could not lock {workdir}; see its log')
    if error is not None:
        raise error
    return lock


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
                       devices: list | None = None,
                       allow_config_change: bool = False) -> dict[str, Any]:
    """Trains and evaluates `config` in `workdir`, resuming from its newest checkpoint.

    A workdir whose config.json differs in a key that changes the weights or the results is
    refused (ConfigChangedError) unless `allow_config_change`; then every config segment is
    recorded with its step range in summary.json.
    """
    wall_start = time.time()
    # Random bits that do not depend on how arrays are sharded (big_vision sets it too).
    jax.config.update('jax_threefry_partitionable', True)

    # ---- Checks: nothing is written before they pass -----------------------------------------
    recipes.validate_config(config)
    builder = pipeline.get_builder(config.dataset)
    meta = pipeline.dataset_meta(builder, config.dataset)
    splits = pipeline.data_splits(builder, config.dataset)  # With a minival, test waits to the end.
    devices = devices if devices is not None else jax.devices()
    mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P('data'))
    config = resolve_config(config, meta, len(devices))
    total_steps = config.train.steps
    global_batch = config.train.batch_size
    model = models.create_model(config.model.name, num_classes=config.model.num_classes,
                                dtype=recipes.COMPUTE_DTYPES[config.model.compute_dtype],
                                **config.model.kwargs)
    examples_per_epoch = meta.num_train_examples * jax.process_count()
    steps_per_epoch = examples_per_epoch / global_batch
    schedule = optim.learning_rate_schedule(config.optim, global_batch_size=global_batch,
                                            total_steps=total_steps,
                                            steps_per_epoch=steps_per_epoch)
    image_shape = (config.dataset.image_size, config.dataset.image_size, meta.channels)
    head = finetune.head_parameters(config, config.dataset.image_size)
    tx = optim.make_optimizer(config.optim, schedule, finetune.lr_rules(config, head))
    recipe = Recipe.from_config(config, steps_per_epoch)
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    init_fn = functools.partial(init_train_state, model=model, tx=tx, image_shape=image_shape,
                                with_ema=recipe.use_ema)
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
        jax.eval_shape(init_fn, init_key))

    os.makedirs(workdir, exist_ok=True)
    with contextlib.ExitStack() as cleanup:  # Undone in reverse order, on every exit path.
        # ---- Workdir: one writer, the changed-config policy, restore -------------------------
        lock = _hold_workdir(workdir)
        if lock is not None:
            cleanup.callback(lock.release)
        changes = recipes.config_changes(workdir, config) or {}
        refused = recipes.needs_permission(changes)
        if refused and not allow_config_change:
            raise ConfigChangedError(
                f'the config differs from {workdir}/config.json in {len(refused)} key(s): '
                f'{recipes.describe_changes(refused)}; re-run with the same config, pass '
                '--allow_config_change to continue with this one (recorded in summary.json), '
                'or use a new --workdir')
        checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
        cleanup.callback(checkpointer.close)
        try:
            restored = checkpointer.restore_newest(abstract_state)
        except StateMismatchError as mismatch:
            cause = (f'config.json differs in {recipes.describe_changes(refused)}' if refused
                     else 'no config key changed, so the code did')
            raise ConfigChangedError(f'{mismatch}: {cause}; no checkpoint was touched: re-run '
                                     'with the config in config.json, or use a new --workdir'
                                     ) from None
        if restored is None:
            state, record = jit_init(init_fn, replicated)(init_key), None
            if config.train.init_from:  # Step 0 only: a resumed run has its own weights.
                params, batch_stats = finetune.load_initial_variables(
                    config.train.init_from, config.model.name, state.params, state.batch_stats,
                    head)
                state = jit_init(lambda key, loaded: init_fn(key, variables=loaded),
                                 replicated)(init_key, (params, batch_stats))
        else:
            state, record = restored
            logging.warning('resuming from the checkpoint at step %d', int(state.step))
        start_step = int(state.step)
        if start_step > total_steps:
            raise ConfigChangedError(f'the newest checkpoint is at step {start_step}, past '
                                     f'train.steps={total_steps}; raise train.steps or use a new '
                                     '--workdir')
        record = _continue_record(record, start_step, recipes.flat_json(config), global_batch)
        examples_at_start = record['examples_seen']
        num_params = count_params(state.params)
        if jax.process_index() == 0:
            _write_config(workdir, config, start_step)

        # ---- Steps ---------------------------------------------------------------------------
        train_fn = jax.jit(
            functools.partial(steps.train_step, model=model, tx=tx,
                              label_smoothing=recipe.label_smoothing,
                              aux_loss_weight=recipe.aux_loss_weight, ema_decay=recipe.ema_decay,
                              ema_warmup=recipe.ema_warmup, mix=recipe.mix,
                              normalization=recipe.normalization),
            in_shardings=(replicated, replicated, batch_sharding, replicated),
            out_shardings=(replicated, replicated), donate_argnums=(0,))
        eval_fn = jax.jit(functools.partial(steps.eval_step, model=model,
                                            normalization=recipe.normalization),
                          in_shardings=(replicated, replicated, batch_sharding),
                          out_shardings=replicated, donate_argnums=(1,))
        eval_data = pipeline.eval_batches(builder, config.dataset, split=splits.during_training,
                                          global_batch_size=recipe.eval_batch_size)
        step_key = jax.device_put(step_key, replicated)

        def run_eval(state: TrainState, data: pipeline.EvalData = eval_data) -> dict[str, float]:
            """Raw weights' metrics, and with EMA on, the averaged weights' as ema_loss, ..."""
            variables = {'params': state.params, 'batch_stats': state.batch_stats}
            metrics = evaluate(eval_fn, variables, data, batch_sharding, replicated)
            if recipe.use_ema:
                averaged = {'params': state.ema_params, 'batch_stats': state.ema_batch_stats}
                ema = evaluate(eval_fn, averaged, data, batch_sharding, replicated)
                metrics.update({f'ema_{name}': value for name, value in ema.items()})
            return metrics

        def learning_rate(step: int) -> float:
            with jax.transfer_guard('allow'):  # Host bookkeeping: the schedule computes in jnp.
                return float(schedule(step))

        # ---- Loop ----------------------------------------------------------------------------
        writer = MetricWriter(workdir, config)
        cleanup.callback(writer.close)
        batches = pipeline.train_batches(builder, config.dataset, seed=config.seed,
                                         global_batch_size=global_batch,
                                         start_example=examples_at_start // jax.process_count())
        earlier_wall_seconds = record['wall_seconds']  # Spent by earlier runs in this workdir.
        throughput = cost.Throughput(record)

        def new_sums(saved: dict | None = None) -> steps.Metrics:
            host = steps.zero_metrics(steps.TRAIN_METRICS)
            host.update({name: np.float32(value) for name, value in (saved or {}).items()})
            return jax.device_put(host, replicated)

        def check_finite(sums_host: dict, step: int) -> None:
            if sums_host['nonfinite_steps'] > 0 or not np.isfinite(sums_host['loss_sum']):
                raise NonFiniteLossError(
                    f'loss, gradients or weights became NaN/inf between steps {window_start} and '
                    f'{step}; stopped without saving (newest checkpoint: step '
                    f'{checkpointer.manager.latest_step()}); lower optim.base_lr or raise '
                    'optim.warmup_epochs')

        def save(step: int, sums_host: dict) -> None:
            record.update(wall_seconds=earlier_wall_seconds + time.time() - wall_start,
                          examples_seen=examples_at_start + (step - start_step) * global_batch,
                          # The open log window, so the first record after a resume averages
                          # the steps it says it does.
                          window={'start': window_start,
                                  'sums': {k: float(v) for k, v in sums_host.items()}})
            record['config_segments'][-1]['to_step'] = step
            checkpointer.save(step, state, json.loads(json.dumps(record)))  # A frozen copy.

        # The open log window of the checkpoint resumed from, if it has one.
        window = record.pop('window', None)
        if window and window['start'] < start_step:
            sums, window_start = new_sums(window['sums']), window['start']
        else:
            sums, window_start = new_sums(), start_step
        window_time, timed_steps = time.time(), 0
        eval_metrics, state_step = None, start_step
        in_flight = collections.deque()  # Metrics of dispatched steps not yet waited for.
        depth = max_steps_in_flight(devices[0].platform)
        stop, agreement = cleanup.enter_context(StopSignals()), StopAgreement()
        progress = tqdm.tqdm(total=total_steps, initial=start_step, unit='step',
                             dynamic_ncols=True, disable=jax.process_index() != 0)
        cleanup.callback(progress.close)
        try:
            # Catches any implicit host<->device copy, in the step and everywhere around it.
            with jax.transfer_guard('disallow'):
                for step in range(start_step + 1, total_steps + 1):
                    batch = jax.make_array_from_process_local_data(batch_sharding, next(batches))
                    state, sums = train_fn(state, sums, batch, step_key)
                    state_step, timed_steps = step, timed_steps + 1
                    in_flight.append(sums)
                    while len(in_flight) > depth:  # Bound the steps queued ahead of the device.
                        jax.block_until_ready(in_flight.popleft())
                    checkpointer.check()  # A failed background write is reported here.
                    progress.update(1)

                    if _is_time(step, config.train.log_every, total_steps):
                        sums_host = jax.device_get(sums)  # The only device-to-host copy here.
                        check_finite(sums_host, step)
                        window_seconds = time.time() - window_time
                        throughput.add_window(timed_steps * global_batch, timed_steps,
                                              window_seconds)
                        train_metrics = {
                            **steps.summarize(sums_host),
                            'lr': learning_rate(step - 1),  # The LR the last step used.
                            'img_per_sec': timed_steps * global_batch / window_seconds,
                        }
                        writer.write(step, 'train', train_metrics)
                        progress.set_postfix(loss=f'{train_metrics["loss"]:.4f}',
                                             img_s=f'{train_metrics["img_per_sec"]:.0f}')
                        sums, window_start = new_sums(), step
                        window_time, timed_steps = time.time(), 0
                        in_flight.clear()

                    if _is_time(step, config.train.eval_every, total_steps):
                        eval_start = time.time()
                        eval_metrics = run_eval(state)
                        writer.write(step, 'eval', eval_metrics, dataset_split=eval_data.split)
                        _update_best(record, eval_metrics, step)
                        progress.write(f'step {step}: ' + ', '.join(
                            f'{name} {value:.4f}' for name, value in eval_metrics.items()))
                        window_time += time.time() - eval_start  # Keep eval time out of img/s.

                    interrupted = agreement.should_stop(step, stop.signum is not None)
                    if interrupted or _is_time(step, config.train.checkpoint_every, total_steps):
                        sums_host = jax.device_get(sums)
                        check_finite(sums_host, step)  # Never save a diverged state.
                        save(step, sums_host)
                    if interrupted:
                        checkpointer.wait()  # Raises if the save failed: never claim it landed.
                        raise TrainingInterrupted(step, stop.signum or signal.SIGTERM)
                if eval_metrics is None:  # Re-run of a finished workdir: evaluate what is there.
                    eval_metrics = run_eval(state)
                final_metrics = eval_metrics
                if splits.minival and not config.dataset.test_at_end:
                    final_metrics = {}  # A search trial: the test split stays unread.
                elif splits.minival:  # Every selection used minival; now the test split, read once.
                    test_data = pipeline.eval_batches(builder, config.dataset, split=splits.test,
                                                      global_batch_size=recipe.eval_batch_size)
                    final_metrics = run_eval(state, test_data)
                    writer.write(state_step, 'eval', final_metrics, dataset_split=splits.test,
                                 wandb_section='test')
            checkpointer.wait()  # The final checkpoint landed before the summary says so.
        except (TrainingInterrupted, NonFiniteLossError, NonFiniteStateError,
                CheckpointWriteError):
            raise
        except Exception:  # Anything else (data, eval, a full metrics.jsonl disk): keep the steps
            _save_before_exit(checkpointer, state_step, state,  # done since the last checkpoint.
                              lambda: save(state_step, jax.device_get(sums)))
            raise

        summary = {
            'model': config.model.name,
            'dataset': config.dataset.name,
            'params': num_params,
            'steps': state_step,
            'epochs': record['examples_seen'] / examples_per_epoch,
            'global_batch_size': global_batch,
            'devices': len(devices),
            **{f'final_{name}': value for name, value in final_metrics.items()},
            **{name: value for name, value in record.items() if name.startswith('best_')},
            **({f'minival_{name}': value for name, value in eval_metrics.items()}
               if splits.minival else {}),
            'splits': dataclasses.asdict(splits),  # TFDS expressions of train, minival, test.
            'metrics_from': {**({'final_*': 'test'} if final_metrics else {}),
                             'best_*': 'minival' if splits.minival else 'test',
                             **({'minival_*': 'minival'} if splits.minival else {})},
            **cost.model_facts(model, config.dataset.image_size, meta.channels),
            **throughput.summary(),
            'wall_seconds': earlier_wall_seconds + time.time() - wall_start,
            'eval_preprocessing': preprocess.describe_eval(config.dataset),
            'config': json.loads(config.to_json_best_effort()),  # Every switch, beside the result.
            'config_segments': record['config_segments'],
        }
        writer.write_summary(summary)
    return summary


def _save_before_exit(checkpointer: Checkpointer, step: int, state: TrainState,
                      save: Callable[[], None]) -> None:
    """On an unexpected error, saves the steps done since the last checkpoint (best effort)."""
    if step == (checkpointer.manager.latest_step() or 0) or any(
            leaf.is_deleted() for leaf in jax.tree.leaves(state)):
        return
    try:
        save()
        checkpointer.wait()
        logging.warning('saved a checkpoint at step %d before stopping on the error below', step)
    except Exception as error:  # The error below is what the user must see; note this one.
        logging.warning('could not save a checkpoint before stopping: %s: %s',
                        type(error).__name__, str(error).splitlines()[0] if str(error) else '')
