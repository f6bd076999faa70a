"""Logging inspection figures into the W&B run that trained the checkpoint.

The trainer keeps its W&B run id in the workdir, so the figures join the same run (resumed), under
`inspect/<view>`, in the mode the run's config asks for (online falls back to offline without
credentials, as in training).
"""

import os

from jaxconv.inspect.run import Run
from jaxconv.train import writer


def log_images(run: Run, pngs: dict[str, str]) -> None:
    """Logs each {name: png path} as a W&B image of the run's own W&B run."""
    mode = writer.resolve_wandb_mode(run.config.wandb.mode)
    if mode == 'disabled':
        raise ValueError(f'W&B is disabled for {run.workdir} (wandb.mode=disabled); drop --wandb')
    id_path = os.path.join(run.workdir, writer._WANDB_ID_FILE)
    if not os.path.isfile(id_path):
        raise ValueError(f'{run.workdir} has no W&B run id ({id_path}); it never logged to W&B')
    with open(id_path) as f:
        run_id = f.read().strip()
    import wandb

    wandb_run = wandb.init(project=run.config.wandb.project,
                           entity=run.config.wandb.entity or None, id=run_id, resume='allow',
                           dir=run.workdir, mode=mode)
    try:
        wandb_run.log({f'inspect/{name}': wandb.Image(path) for name, path in pngs.items()})
    finally:
        wandb_run.finish()
