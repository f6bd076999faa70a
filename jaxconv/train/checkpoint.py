"""Orbax checkpoints of the whole train state plus a small JSON record, under workdir/checkpoints.

Order of precedence on start (as in big_vision's "Load Checkpoint"): the workdir's own newest
readable checkpoint, else a fresh init. Restoring tells two failures apart:

- a checkpoint whose files cannot be read, or whose values are NaN/inf, is damaged: it is moved,
  never deleted, to workdir/checkpoints_unreadable/ with a warning, and the next newest is tried;
- a readable checkpoint whose state has other leaves, shapes or dtypes than the config builds
  (another model, optimizer or EMA setting) is not damaged: `StateMismatchError`, and no
  checkpoint is touched.

A state with NaN/inf values is never saved, and a failed write is reported within a step or two
(`check`) with the path and the cause, instead of at the next save.
"""

import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxconv.train import steps

UNREADABLE_DIR = 'checkpoints_unreadable'


class NoReadableCheckpointError(RuntimeError):
    """Every checkpoint in the workdir failed to restore."""


class StateMismatchError(RuntimeError):
    """A readable checkpoint holds a differently structured state than the config builds."""

    def __init__(self, step: int, difference: str):
        super().__init__(f'checkpoint step {step} holds another train state than this config '
                         f'builds ({difference})')
        self.step = step
        self.difference = difference


class NonFiniteStateError(RuntimeError):
    """The train state to be saved holds NaN or inf; it was not saved."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (full disk, unwritable or vanished directory)."""


def _first_line(error: BaseException) -> str:
    """The error's type and first line; a long line keeps its end, where the OS reason is."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else ''
    if len(line) > 300:  # Tensorstore: '...Error writing "<path>": ...: No space left on device'
        line = f'{line[:120]} ... {line[-170:]}'
    return f'{type(error).__name__}: {line}' if line else type(error).__name__


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """'params/Conv_0/kernel' -> (shape, dtype) for every array leaf of `tree`.

    Paths are spelled the same for the in-memory TrainState (attributes, tuple indices) and for
    Orbax's metadata of it (nested dicts and lists), so the two can be compared.
    """
    specs = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = '/'.join(str(getattr(entry, 'key', getattr(entry, 'idx', getattr(
            entry, 'name', entry)))) for entry in path)
        specs[name] = (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
    return specs


def structure_difference(saved: Any, expected: Any) -> str | None:
    """The first leaf where a checkpoint's state and the expected one differ, or None."""
    saved, expected = _leaf_specs(saved), _leaf_specs(expected)
    for name in sorted(saved.keys() | expected.keys()):
        if name not in saved:
            return f'{name} is not in the checkpoint'
        if name not in expected:
            return f'the checkpoint has {name}, which this config does not build'
        if saved[name] != expected[name]:
            (shape_a, dtype_a), (shape_b, dtype_b) = saved[name], expected[name]
            return f'{name} is {shape_a} {dtype_a} there and {shape_b} {dtype_b} here'
    return None


class Checkpointer:
    """Saves asynchronously (training continues while files are written) and restores the newest."""

    def __init__(self, workdir: str, keep: int):
        self.workdir = workdir
        self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
        self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            # Creating the step directory in the caller's thread makes an unwritable or vanished
            # directory fail in `save` itself. Asynchronously, Orbax's writer threads would wait
            # five minutes for a directory that never comes, and the error would surface a whole
            # checkpoint interval later.
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False)),
            # Named handlers let a new process read a checkpoint's metadata before restoring it.
            item_handlers={'state': ocp.StandardCheckpointHandler(),
                           'record': ocp.JsonCheckpointHandler()})
        self._all_finite = jax.jit(steps.all_finite)
        self._pending_step = None  # The step whose files are still being written.

    def is_finite(self, state: Any) -> bool:
        """Whether every float of `state` (params, BN statistics, EMA, optimizer) is finite."""
        return bool(jax.device_get(self._all_finite(state)))

    def save(self, step: int, state: Any, record: dict) -> None:
        """Starts saving `state` and the JSON-able `record` at `step`; returns before files land."""
        if not self.is_finite(state):
            raise NonFiniteStateError(
                f'the train state at step {step} holds NaN/inf (params, BatchNorm statistics or '
                f'their averages); not saved (newest checkpoint: step '
                f'{self.manager.latest_step()}); lower optim.base_lr or raise optim.warmup_epochs')
        self.check()  # A failure of the previous save is reported before starting another.
        try:
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=True)
        except Exception as error:  # OSError, or Orbax's wrapping of one.
            raise CheckpointWriteError(self._write_failure(step, error)) from error
        self._pending_step = step

    def check(self) -> None:
        """Raises CheckpointWriteError if the last save's files failed to land; cheap to call."""
        if self._pending_step is None or self.manager.is_saving_in_progress():
            return
        step, self._pending_step = self._pending_step, None
        try:
            self.manager.wait_until_finished()  # Finished already: returns or raises at once.
        except Exception as error:
            raise CheckpointWriteError(self._write_failure(step, error)) from error

    def _write_failure(self, step: int, error: BaseException) -> str:
        return (f'could not write checkpoint step {step} to {self.directory} '
                f'({_first_line(error)}); free disk space or fix the workdir, then re-run to '
                f'resume from step {self.manager.latest_step() or 0}')

    def restore_newest(self, abstract_state: Any) -> tuple[Any, dict] | None:
        """(state, record) from the newest readable checkpoint, or None when there is none.

        `abstract_state` gives each leaf's shape, dtype and sharding, so arrays are restored
        straight into place on the mesh. Raises StateMismatchError, touching nothing, when the
        newest checkpoint is readable but structured differently from `abstract_state`.
        """
        steps_saved = sorted(self.manager.all_steps(), reverse=True)
        for step in steps_saved:
            try:
                saved = self.manager.item_metadata(step)['state']
            except Exception as error:  # Orbax and tensorstore raise many types.
                self._set_aside(step, _first_line(error))
                continue
            difference = structure_difference(saved.tree, abstract_state)
            if difference:
                raise StateMismatchError(step, difference)
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    record=ocp.args.JsonRestore()))
            except Exception as error:
                self._set_aside(step, _first_line(error))
                continue
            if not self.is_finite(restored['state']):  # Flipped bits that still decode.
                self._set_aside(step, 'it holds NaN/inf values')
                continue
            return restored['state'], dict(restored['record'])
        set_aside = os.path.join(self.workdir, UNREADABLE_DIR)
        if steps_saved or (os.path.isdir(set_aside) and os.listdir(set_aside)):
            # Never start over silently in a workdir whose training was lost.
            raise NoReadableCheckpointError(
                f'no checkpoint in {self.directory} could be read (the damaged ones are in '
                f'{set_aside}); use a new --workdir to start over')
        return None

    def restore_subtree(self, target: dict) -> tuple[int, dict]:
        """(step, the `target` entries of the state) from the newest checkpoint that reads them.

        `target` is a subset of the state's fields, e.g. {'params': ..., 'batch_stats': ...} as
        ShapeDtypeStructs: the rest (optimizer, averages) is never read. For tools that only read
        a run (inspection, fine-tuning's init_from): nothing is moved aside or written. Raises
        NoReadableCheckpointError listing each step's failure when none reads.
        """
        # A PyTree handler reads a subset of a saved tree (partial restore); the Standard one
        # that `save` uses would insist on the whole structure.
        reader = ocp.CheckpointManager(self.directory, item_handlers={
            'state': ocp.PyTreeCheckpointHandler()})
        errors = []
        for step in sorted(reader.all_steps(), reverse=True):
            try:
                restored = reader.restore(step, args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(
                        item=target, partial_restore=True,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(target))))
            except Exception as error:  # Orbax and tensorstore raise many types.
                errors.append(f'step {step}: {_first_line(error)[:200]}')
                logging.warning('checkpoint %s; trying an older one', errors[-1])
                continue
            reader.close()
            return step, dict(restored['state'])
        reader.close()
        raise NoReadableCheckpointError(
            f'no checkpoint in {self.directory} could be read '
            f'({"; ".join(errors) or "there are none"})')

    def _set_aside(self, step: int, reason: str) -> None:
        source = os.path.join(self.directory, str(step))
        target = os.path.join(self.workdir, UNREADABLE_DIR, str(step))
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            suffix = 0
            while os.path.exists(target if not suffix else f'{target}.{suffix}'):
                suffix += 1
            target = target if not suffix else f'{target}.{suffix}'
            shutil.move(source, target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
        self.manager.reload()
        logging.warning('checkpoint at step %d is damaged (%s); moved it to %s and trying an '
                        'older one', step, reason, target)

    def wait(self) -> None:
        """Blocks until the pending save has landed; raises CheckpointWriteError if it failed."""
        if self._pending_step is not None:
            step, self._pending_step = self._pending_step, None
            try:
                self.manager.wait_until_finished()
            except Exception as error:
                raise CheckpointWriteError(self._write_failure(step, error)) from error

    def close(self) -> None:
        """Finishes pending writes and releases Orbax's threads; never raises (cleanup path)."""
        for finish in (self.manager.wait_until_finished, self.manager.close):
            try:
                finish()
            except Exception as error:  # Reported already by `check` or `wait`.
                logging.warning('closing the checkpoint manager: %s', _first_line(error))
