"""Orbax checkpoints of the whole train state plus a small JSON record, under workdir/checkpoints.

Order of precedence on start (as in big_vision's "Load Checkpoint"): the workdir's own newest
readable checkpoint, else a fresh init. An unreadable checkpoint is moved, never deleted, to
workdir/checkpoints_unreadable/ with a warning, and the next newest one is tried.
"""

import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

UNREADABLE_DIR = 'checkpoints_unreadable'


class NoReadableCheckpointError(RuntimeError):
    """Every checkpoint in the workdir failed to restore."""


class Checkpointer:
    """Saves asynchronously (training continues while files are written) and restores the newest."""

    def __init__(self, workdir: str, keep: int):
        self.workdir = workdir
        self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def save(self, step: int, state: Any, record: dict) -> None:
        """Starts saving `state` and the JSON-able `record` at `step`; returns before files land."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=True)

    def restore_newest(self, abstract_state: Any) -> tuple[Any, dict] | None:
        """(state, record) from the newest readable checkpoint, or None when there is none.

        `abstract_state` gives each leaf's shape, dtype and sharding, so arrays are restored
        straight into place on the mesh.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    record=ocp.args.JsonRestore()))
            except Exception as error:  # Orbax and tensorstore raise many types for bad files.
                moved = self._set_aside(step)
                logging.warning('checkpoint at step %d is unreadable (%s: %s); moved it to %s and '
                                'trying an older one', step, type(error).__name__,
                                str(error).splitlines()[0][:200], moved)
                continue
            return restored['state'], dict(restored['record'])
        if steps:
            raise NoReadableCheckpointError(
                f'no checkpoint in {self.directory} could be read (steps {sorted(steps)}, now in '
                f'{os.path.join(self.workdir, UNREADABLE_DIR)}); use a new --workdir to start over')
        return None

    def _set_aside(self, step: int) -> str:
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
        return target

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
