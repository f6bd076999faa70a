"""Results: workdir/metrics.jsonl, workdir/summary.json and Weights & Biases, from process 0 only.

metrics.jsonl is append-only, so a resumed run never loses what an earlier one wrote; if a crash
came between a log and the next checkpoint, the steps after that checkpoint appear twice, and
`read_metrics` keeps the newest record per (step, split, dataset split). A line torn by a crash
mid-write is cut off when a run resumes, and skipped by `read_metrics`.

W&B can never take training down: a failure of W&B (its process killed, its connection lost) is
reported in one line, W&B is dropped for the rest of the run, and the local files go on. Without
network an online run logs offline after a three-second probe instead of hanging in `wandb.init`.
"""

import json
import math
import netrc
import os
import socket
import threading
import urllib.parse
import uuid
from typing import Any

import jax
import ml_collections
from absl import logging

WANDB_MODES = ('online', 'offline', 'disabled')
_WANDB_MODE_ALIASES = {'dryrun': 'offline', 'run': 'online'}  # W&B's own older names.
_WANDB_ID_FILE = 'wandb_run_id'
_PROBE_SECONDS = 3.0


class NonFiniteResultError(RuntimeError):
    """A result to be written is NaN or inf; the earlier summary.json was kept."""


def has_wandb_credentials() -> bool:
    """True when an API key is configured (env or ~/.netrc); never reads the key out."""
    if os.environ.get('WANDB_API_KEY'):
        return True
    try:
        return netrc.netrc().authenticators('api.wandb.ai') is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def requested_wandb_mode(requested: str | None) -> str:
    """`wandb.mode`, or when the user left it unset (None), $WANDB_MODE, else online."""
    mode = requested if requested is not None else os.environ.get('WANDB_MODE') or 'online'
    mode = _WANDB_MODE_ALIASES.get(mode, mode)
    if mode not in WANDB_MODES:
        where = 'wandb.mode' if requested is not None else 'WANDB_MODE'
        raise ValueError(f'unknown {where} {mode!r}; valid: {", ".join(WANDB_MODES)}')
    return mode


def resolve_wandb_mode(requested: str | None) -> str:
    """The W&B mode to run in: `requested_wandb_mode`, online falling back to offline without
    credentials."""
    mode = requested_wandb_mode(requested)
    if mode == 'online' and not has_wandb_credentials():
        logging.warning('no W&B credentials (WANDB_API_KEY or `wandb login`): logging offline; '
                        'upload later with `wandb sync`')
        return 'offline'
    return mode


def wandb_server_reachable(timeout: float = _PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the W&B server ($WANDB_BASE_URL) opens within `timeout` s.

    Runs in a daemon thread, because name resolution has no timeout of its own.
    """
    url = urllib.parse.urlparse(os.environ.get('WANDB_BASE_URL') or 'https://api.wandb.ai')
    port = url.port or (443 if url.scheme == 'https' else 80)
    reachable = []

    def probe():
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            reachable.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reachable)


def _torn_tail_removed(path: str) -> int:
    """Cuts a final line that a crash left without its newline; returns the bytes removed."""
    if not os.path.exists(path):
        return 0
    with open(path, 'rb+') as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b'\n':
            return 0
        keep = 0
        position = size
        while position > 0:  # Back to the last newline, a block at a time.
            start = max(0, position - 65536)
            f.seek(start)
            block = f.read(position - start)
            newline = block.rfind(b'\n')
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        f.truncate(keep)
        return size - keep


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(v) for v in value)
    return True


def write_json_atomically(path: str, data: Any, **dump_kwargs) -> None:
    """Writes `data` so that `path` holds either its old content or the new one, never half."""
    temporary = f'{path}.tmp'
    with open(temporary, 'w') as f:
        json.dump(data, f, **dump_kwargs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


class MetricWriter:
    """Appends metric records and mirrors them to W&B; a no-op on processes other than 0."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self.workdir = workdir
        self.active = jax.process_index() == 0
        self.run = None
        if not self.active:
            return
        path = os.path.join(workdir, 'metrics.jsonl')
        torn = _torn_tail_removed(path)
        if torn:
            logging.warning('metrics.jsonl ended in a line torn by a crash (%d bytes); cut it off',
                            torn)
        self._jsonl = open(path, 'a', buffering=1)
        mode = resolve_wandb_mode(config.wandb.mode)
        if mode == 'online' and not wandb_server_reachable():
            logging.warning('W&B server unreachable: logging offline; upload later with '
                            '`wandb sync`')
            mode = 'offline'
        if mode != 'disabled':
            self.run = self._init_wandb(config, mode)

    def _init_wandb(self, config: ml_collections.ConfigDict, mode: str):
        import wandb

        kwargs = dict(project=config.wandb.project, entity=config.wandb.entity or None,
                      name=config.wandb.name or os.path.basename(os.path.abspath(self.workdir)),
                      group=config.wandb.group or None, tags=list(config.wandb.tags),
                      config=config.to_dict(), dir=self.workdir, id=self._wandb_run_id(),
                      resume='allow')
        for attempt in (mode, 'offline') if mode == 'online' else (mode,):
            try:
                return wandb.init(mode=attempt, **kwargs)
            except Exception as error:  # wandb raises its own CommError, timeouts, OSError.
                logging.warning('W&B %s start failed (%s: %s)', attempt, type(error).__name__,
                                str(error).strip().splitlines()[0][:200] if str(error) else '')
        logging.warning('W&B is off for this run; metrics.jsonl and summary.json go on')
        return None

    def _wandb_run_id(self) -> str:
        """The same W&B run across resumes of one workdir."""
        path = os.path.join(self.workdir, _WANDB_ID_FILE)
        if os.path.exists(path):
            with open(path) as f:
                return f.read().strip()
        run_id = uuid.uuid4().hex[:12]
        with open(path, 'w') as f:
            f.write(run_id)
        return run_id

    def _to_wandb(self, action) -> None:
        """Runs `action(run)`; on any failure reports once and drops W&B for the rest of the run."""
        if self.run is None:
            return
        try:
            action(self.run)
        except Exception as error:  # A dead W&B process: ConnectionResetError, BrokenPipeError.
            logging.warning('W&B failed (%s: %s); W&B logging is off for the rest of this run, '
                            'metrics.jsonl and summary.json go on', type(error).__name__,
                            str(error).strip().splitlines()[0][:200] if str(error) else '')
            self.run = None
            self._teardown_wandb()

    @staticmethod
    def _teardown_wandb() -> None:
        """Releases W&B's connection so that its exit hook does not fail again at exit."""
        import wandb

        try:
            wandb.teardown()
        except Exception:  # The connection is gone; this only unregisters its exit hook.
            pass

    def write(self, step: int, split: str, metrics: dict[str, float], *,
              dataset_split: str | None = None, wandb_section: str | None = None) -> None:
        """One record; eval records name the TFDS split they read (minival or test)."""
        if not self.active:
            return
        fields = {} if dataset_split is None else {'dataset_split': dataset_split}
        self._jsonl.write(json.dumps({'step': step, 'split': split, **fields, **metrics}) + '\n')
        section = wandb_section or split
        self._to_wandb(lambda run: run.log(
            {f'{section}/{name}': value for name, value in metrics.items()}, step=step))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Writes summary.json; a summary with NaN/inf raises and leaves the earlier one."""
        if not self.active:
            return
        if not _all_finite(summary):
            bad = sorted(k for k, v in summary.items() if not _all_finite(v))
            raise NonFiniteResultError(f'results are NaN/inf ({", ".join(bad)}); summary.json '
                                       'not written (an earlier one is kept)')
        write_json_atomically(os.path.join(self.workdir, 'summary.json'), summary, indent=2)
        # W&B holds the config already, as the run's config.
        self._to_wandb(lambda run: run.summary.update(
            {k: v for k, v in summary.items() if k != 'config'}))

    def close(self) -> None:
        if not self.active:
            return
        self._jsonl.close()
        self._to_wandb(lambda run: run.finish())


def read_metrics(workdir: str) -> list[dict]:
    """The records of metrics.jsonl, the newest per (step, split, dataset split), by step.

    Lines that are not JSON (one torn by a crash mid-write) are skipped with a warning.
    """
    newest, skipped = {}, 0
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            newest[(record['step'], record['split'], record.get('dataset_split'))] = record
    if skipped:
        logging.warning('%s/metrics.jsonl: skipped %d torn line(s)', workdir, skipped)
    return sorted(newest.values(), key=lambda r: (r['step'], r['split']))
