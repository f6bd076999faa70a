"""Stopping on SIGTERM/SIGINT at a step that every process agrees on.

Each process catches the signal on its own, and a cluster's scheduler does not deliver it to all
hosts at the same step. If each stopped where it saw its signal, the hosts would enter Orbax's
collective save at different steps and hang there. So every `every` steps all processes exchange
their flags (one tiny all-gather) and all stop at the first exchange where any process was
signalled: all save the same step and exit. (JAX's own preemption sync point needs the
coordination service's preemption notifier, which exists only after jax.distributed.initialize
and takes over SIGTERM itself; this exchange behaves the same for one process and for many.)
"""

import signal
from collections.abc import Callable

import jax
import numpy as np

# Steps between flag exchanges in a multi-process run: one tiny collective per 10 steps, and a
# host that was signalled stops at most 9 steps later (well inside a scheduler's grace period).
SYNC_EVERY = 10


class StopSignals:
    """Turns SIGTERM/SIGINT into a flag (`signum`) the loop checks between steps."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self) -> 'StopSignals':
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is True on any of them (a collective: all must call)."""
    from jax.experimental import multihost_utils

    with jax.transfer_guard('allow'):  # A host-side bookkeeping collective, not the hot path.
        return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


class StopAgreement:
    """Decides, identically on every process, whether the run stops after this step.

    `exchange(flag)` must return the same value on every process (any process's flag); with one
    process it is the identity and the flag is looked at after every step.
    """

    def __init__(self, exchange: Callable[[bool], bool] | None = None, every: int | None = None):
        multi = jax.process_count() > 1
        self.exchange = exchange or (any_process if multi else bool)
        self.every = every or (SYNC_EVERY if multi else 1)

    def should_stop(self, step: int, signalled: bool) -> bool:
        """Call after every step on every process; `signalled`: this process got a signal."""
        if step % self.every:
            return False
        return self.exchange(signalled)
