"""Results: workdir/metrics.jsonl, workdir/summary.json and Weights & Biases, from process 0 only.

metrics.jsonl is append-only, so a resumed run never loses what an earlier one wrote; if a crash
came between a log and the next checkpoint, the steps after that checkpoint appear twice, and
`read_metrics` keeps the newest record per (step, split, dataset split).
"""

import json
import netrc
import os
import uuid
from typing import Any

import jax
import ml_collections
from absl import logging

WANDB_MODES = ('online', 'offline', 'disabled')
_WANDB_ID_FILE = 'wandb_run_id'


def has_wandb_credentials() -> bool:
    """True when an API key is configured (env or ~/.netrc); never reads the key out."""
    if os.environ.get('WANDB_API_KEY'):
        return True
    try:
        return netrc.netrc().authenticators('api.wandb.ai') is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(requested: str) -> str:
    if requested not in WANDB_MODES:
        raise ValueError(f'unknown wandb.mode {requested!r}; valid: {", ".join(WANDB_MODES)}')
    if requested == 'online' and not has_wandb_credentials():
        logging.warning('no W&B credentials (WANDB_API_KEY or `wandb login`): logging offline; '
                     'upload later with `wandb sync`')
        return 'offline'
    return requested


class MetricWriter:
    """Appends metric records and mirrors them to W&B; a no-op on processes other than 0."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self.workdir = workdir
        self.active = jax.process_index() == 0
        self.run = None
        if not self.active:
            return
        self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', buffering=1)
        mode = resolve_wandb_mode(config.wandb.mode)
        if mode != 'disabled':
            import wandb

            self.run = wandb.init(
                project=config.wandb.project, entity=config.wandb.entity or None,
                name=config.wandb.name or os.path.basename(os.path.abspath(workdir)),
                group=config.wandb.group or None, tags=list(config.wandb.tags),
                config=config.to_dict(), mode=mode, dir=workdir, id=self._wandb_run_id(),
                resume='allow')

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

    def write(self, step: int, split: str, metrics: dict[str, float], *,
              dataset_split: str | None = None, wandb_section: str | None = None) -> None:
        """One record; eval records name the TFDS split they read (minival or test)."""
        if not self.active:
            return
        fields = {} if dataset_split is None else {'dataset_split': dataset_split}
        self._jsonl.write(json.dumps({'step': step, 'split': split, **fields, **metrics}) + '\n')
        if self.run is not None:
            section = wandb_section or split
            self.run.log({f'{section}/{name}': value for name, value in metrics.items()},
                         step=step)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if not self.active:
            return
        with open(os.path.join(self.workdir, 'summary.json'), 'w') as f:
            json.dump(summary, f, indent=2)
        if self.run is not None:  # W&B holds the config already, as the run's config.
            self.run.summary.update({k: v for k, v in summary.items() if k != 'config'})

    def close(self) -> None:
        if not self.active:
            return
        self._jsonl.close()
        if self.run is not None:
            self.run.finish()


def read_metrics(workdir: str) -> list[dict]:
    """The records of metrics.jsonl, the newest per (step, split, dataset split), by step."""
    newest = {}
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        for line in f:
            record = json.loads(line)
            newest[(record['step'], record['split'], record.get('dataset_split'))] = record
    return sorted(newest.values(), key=lambda r: (r['step'], r['split']))
