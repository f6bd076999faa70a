"""One writer per workdir: the lock file `<workdir>/workdir.lock`.

It holds JSON {"host", "pid", "started"} of the process training there (the study runner reads
it to show a run as running). A second process exits at once with one line naming the holder.
A lock left by a process that died without releasing it (kill -9, a crashed node coming back)
is stale when its host is this host and its pid is gone, or is now a process that started after
the lock was taken; it is taken over with a warning. A lock from another host cannot be
checked from here: the message says to delete the file if that run is known to be dead.

Creation is atomic (`os.link` of a complete temporary file fails if the lock exists, also on
NFS), so a reader never sees a half-written lock.
"""

import json
import os
import socket
import time

from absl import logging

LOCK_FILE = 'workdir.lock'


class WorkdirLockedError(RuntimeError):
    """Another live process holds the workdir."""


def _process_start_time(pid: int) -> float | None:
    """When `pid` started, in seconds since the epoch (Linux /proc); None where unknown."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()  # After the command name, which may hold
        start_ticks = int(fields[19])                     # spaces; field 22 of stat(5).
        with open('/proc/stat') as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
        return boot + start_ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def holder_is_alive(holder: dict) -> bool:
    """False only when `holder` (a lock's JSON) is provably gone: same host, pid dead or reused."""
    if holder.get('host') != socket.gethostname():
        return True
    pid = holder.get('pid')
    if not isinstance(pid, int):
        return True  # Cannot tell: treat it as held.
    if pid == os.getpid():
        return False  # Left by an earlier run in this very process.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Alive, owned by someone else.
        pass
    started = _process_start_time(pid)
    # A process that started after the lock was written cannot have written it (pid reuse).
    return started is None or started <= holder.get('started', 0) + 1.0


def read_holder(workdir: str) -> dict | None:
    """The lock's JSON, or None when the workdir is not locked (or the file is unreadable)."""
    try:
        with open(os.path.join(workdir, LOCK_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _describe(holder: dict) -> str:
    started = holder.get('started')
    when = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started)) if started else '?'
    return f'pid {holder.get("pid")} on host {holder.get("host")} since {when}'


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds the workdir for this process, or raises at once."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self.holder = {'host': socket.gethostname(), 'pid': os.getpid(), 'started': time.time()}

    def acquire(self) -> None:
        for _ in range(3):  # A stale lock is removed, then the link is tried again.
            if self._try_link():
                return
            holder = read_holder(os.path.dirname(self.path))
            if holder is None:
                if os.path.exists(self.path):
                    raise WorkdirLockedError(
                        f'{self.path} exists but is not a readable lock; if no run is using this '
                        'workdir, delete it and re-run')
                continue  # Released between our link and our read.
            if holder_is_alive(holder):
                raise WorkdirLockedError(
                    f'workdir {os.path.dirname(self.path)} is in use by {_describe(holder)}; '
                    f'wait for it, or if that run is dead, delete {self.path}')
            logging.warning('taking over the stale lock of %s (that process is gone)',
                            _describe(holder))
            self._remove_if(holder)
        raise WorkdirLockedError(f'could not take {self.path}; another process keeps taking it')

    def _try_link(self) -> bool:
        temporary = f'{self.path}.{self.holder["pid"]}.tmp'
        with open(temporary, 'w') as f:
            json.dump(self.holder, f)
        try:
            os.link(temporary, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(temporary)

    def _remove_if(self, holder: dict) -> None:
        """Removes the lock file if it still holds `holder` (not a newer lock someone took)."""
        if read_holder(os.path.dirname(self.path)) == holder:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def release(self) -> None:
        self._remove_if(self.holder)

    def __enter__(self) -> 'WorkdirLock':
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
