"""Studies: a file in experiments/ defines runs; `python -m jaxconv.study` trains, tabulates and
plots them (spec.py: the study API; grid.py: grids; launch.py: local, Slurm, sbatch, W&B sweep;
task.py: one attempt at one run; records.py: run state on disk; table.py and plots.py: results)."""

from jaxconv.study.grid import chain, fixed, product, sweep, zip  # noqa: A004
from jaxconv.study.spec import Results, Run, Study, grid_runs, parse_preset, probe_run

__all__ = ['Results', 'Run', 'Study', 'chain', 'fixed', 'grid_runs', 'parse_preset', 'probe_run',
           'product', 'sweep', 'zip']
