"""A study: a Python file in experiments/ whose `get_study(arg)` returns its runs.

  def get_study(arg: str | None, results: study.Results) -> study.Study:   # or get_study(arg)

Each `Run` is one `python -m jaxconv.main` process in `DIR/<run name>/`: a config spec, overrides
and tags. A `probe_run` is instead one `python -m jaxconv.linear_probe` of a trained run's
features (a logistic-regression head on features computed once), so a study can compare
representations. The same arguments give the same runs with the same names, so re-running a study
maps every run onto its old workdir (finished runs are skipped, interrupted ones resume).

A study whose later runs depend on earlier results (compound scaling's step 2 uses step 1's
winner; a coarse-to-fine search's round r+1 uses round r) reads them through `results` and returns
only the runs it can define so far, with `waiting` saying what comes next. The runner trains those,
calls `get_study` again, and repeats until no new run appears.
"""

import dataclasses
import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from jaxconv import config_files
from jaxconv.study import records
from jaxconv.study.grid import Point

# A run name is a directory name and a W&B run name: no slashes, no spaces, no shell specials.
NAME_PATTERN = re.compile(r'[A-Za-z0-9_+][A-Za-z0-9_.,=+-]*')


def format_value(value: Any) -> str:
    """A Python value as ml_collections' config flags parse it back (`--config.KEY=VALUE`)."""
    if isinstance(value, str):
        return value
    return repr(value)


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a study."""

    name: str  # Stable and readable: the run's workdir DIR/<name> and its W&B run name.
    config: str  # configs/FILE.py[:ARG], relative to the directory the study runs from.
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Dotted config keys.
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Table and plot columns.
    # Set by `probe_run`: the workdir of the trained run this run linearly probes. `config` is
    # then '' and `overrides` are the probe's flags (layer, C).
    probe_of: str | None = None

    def config_dict(self) -> ml_collections.ConfigDict:
        """The config this run trains with, before the trainer derives steps and classes (and
        without the extra overrides given on the command line after `--`)."""
        if self.probe_of is not None:
            raise ValueError(f'run {self.name} is a linear probe of {self.probe_of}; it trains '
                             'nothing and has no config of its own')
        config = config_files.load(self.config)
        for key, value in self.overrides.items():
            *parents, leaf = key.split('.')
            node = config
            for parent in parents:
                node = node[parent]
            node[leaf] = value
        return config

    def trainer_args(self) -> list[str]:
        """This run's `jaxconv.main` flags, the workdir aside."""
        return [f'--config={self.config}',
                *(f'--config.{key}={format_value(value)}' for key, value in self.overrides.items())]

    def probe_args(self) -> list[str]:
        """A probe run's `jaxconv.linear_probe` flags, its output directory aside."""
        return [f'--workdir={self.probe_of}',
                *(f'--{key}={format_value(value)}' for key, value in self.overrides.items())]


def probe_run(name: str, trained: str, layer: str = 'pooled', C: float = 1.0,
              tags: Mapping[str, Any] | None = None) -> Run:
    """A linear probe of the features at `layer` (a module path, 'pooled' or 'logits'; see
    jaxconv.models.features) of the run trained in workdir `trained`. Its summary.json has the
    probe's test top-1 as `final_top1`, so tables read it like a training run's. A study returns
    it once `trained` is done (`Results.done`), as two-stage studies do."""
    return Run(name, '', {'layer': layer, 'C': C}, dict(tags or {}), probe_of=trained)


@dataclasses.dataclass
class Study:
    """The runs of a study and how its table and figures read them."""

    runs: Sequence[Run]
    # table.md's columns after `run` and `status` (table.csv has every column); () = the tags,
    # top1 and the cost columns.
    columns: Sequence[str] = ()
    # Adds computed columns (deltas, published values) to the table rows, given in run order.
    derive: Callable[[list[dict[str, Any]]], None] | None = None
    metric: str = 'top1'  # The accuracy column drawn against cost.
    group_by: str | None = None  # A tag: one curve per value in the cost plots.
    # 'cost': top-1 against multiply-adds and step time; 'ladder'; or a function
    # (rows, workdir) -> PNG paths drawing the study's own figure (plots.curves_plot, ...).
    plots: Sequence[str | Callable[[list[dict[str, Any]], str], list[str]]] = ('cost',)
    waiting: str = ''  # Non-empty: more runs follow once these finish; says what they wait for.
    caption: str = ''  # Under table.md: what the columns mean, where published values come from.


class Results:
    """Read access to a study's finished runs, for studies whose later runs depend on them."""

    def __init__(self, workdir: str):
        self.workdir = workdir

    def summary(self, name: str) -> dict | None:
        """The run's summary.json, or None until it has finished."""
        return records.read_summary(os.path.join(self.workdir, name))

    def row(self, name: str) -> dict[str, Any] | None:
        """The run's result columns (records.RESULT_COLUMNS), or None until it has finished."""
        summary = self.summary(name)
        return None if summary is None else records.results_of(summary)

    def done(self, names: Sequence[str]) -> bool:
        return all(self.summary(name) is not None for name in names)

    def best(self, names: Sequence[str], metric: str = 'minival_top1') -> str:
        """The finished run among `names` with the highest `metric` (select on minival, not on
        the test split)."""
        scored = [(row[metric], name) for name in names
                  if (row := self.row(name)) is not None and row.get(metric) is not None]
        if not scored:
            raise ValueError(f'none of {", ".join(names)} has finished with a {metric}')
        return max(scored)[1]


def parse_preset(arg: str | None, presets: Mapping[str, Mapping[str, Any]],
                 study_name: str) -> dict[str, Any]:
    """A study argument 'PRESET[,key=value,...]': the preset's settings with some changed, each
    value typed like the preset's (tests shrink a smoke study: 'smoke,steps=4,max_phi=1')."""
    preset, *tokens = (arg or '').split(',')
    if preset not in presets:
        raise ValueError(f'{study_name} takes a preset, one of {", ".join(presets)}, then '
                         f'optional key=value settings ({study_name}.py:smoke,steps=8); got '
                         f'{arg!r}')
    settings = dict(presets[preset], preset=preset)
    for token in filter(None, tokens):
        key, has_value, text = token.partition('=')
        if key not in settings or key == 'preset' or not has_value:
            raise ValueError(f'{study_name}: unknown setting {token!r}; valid: key=value with key '
                             f'one of {", ".join(k for k in settings if k != "preset")}')
        default = settings[key]
        if isinstance(default, bool):
            settings[key] = text.lower() in ('1', 'true', 'yes')
        elif isinstance(default, (tuple, list)):
            kind = type(default[0]) if default else str  # 'a/b/c'; '' is the empty tuple.
            settings[key] = tuple(kind(v) for v in text.split('/') if v)
        else:
            settings[key] = type(default)(text)
    return settings


def grid_runs(config: str, points: Sequence[Point], *, name: Callable[[Point], str] | None = None,
              overrides: Mapping[str, Any] | None = None) -> list[Run]:
    """Runs from grid points (jaxconv.study.grid): `config.`-prefixed keys become overrides on top
    of `overrides`, the other keys tags. The name defaults to the tags, `key=value` joined by
    commas (the last part of each config key when there are no tags)."""
    runs = []
    for point in points:
        tags = {key: value for key, value in point.items() if not key.startswith('config.')}
        point_overrides = {key[len('config.'):]: value for key, value in point.items()
                           if key.startswith('config.')}
        if name is not None:
            run_name = name(point)
        else:
            named = tags or {key.rsplit('.', 1)[-1]: value
                             for key, value in point_overrides.items()}
            run_name = ','.join(f'{key}={value}' for key, value in named.items())
        runs.append(Run(run_name, config, {**(overrides or {}), **point_overrides}, tags))
    return runs


def check_runs(runs: Sequence[Run]) -> None:
    """Names unique and usable as directories; config files present. Raises ValueError."""
    seen = set()
    for run in runs:
        if not NAME_PATTERN.fullmatch(run.name):
            raise ValueError(f'run name {run.name!r} must match {NAME_PATTERN.pattern} (it is a '
                             'directory and a W&B name)')
        if run.name in seen:
            raise ValueError(f'two runs are named {run.name!r}; names must be unique in a study')
        seen.add(run.name)
    for run in runs:
        if run.probe_of is not None:
            continue
        path = run.config.partition(':')[0]
        if not os.path.isfile(path):
            raise ValueError(f'run {run.name}: config file {path} not found; run the study from '
                             'the directory its config paths are relative to (the repo root)')


def load_study(spec: str, workdir: str) -> Study:
    """Calls `get_study` of the study file in `spec` ('experiments/FILE.py[:ARG]')."""
    path, _, arg = spec.partition(':')
    module = config_files.load_module(path)
    get_study = getattr(module, 'get_study', None)
    if get_study is None:
        raise ValueError(f'{path} has no get_study(arg) function; is it a study file?')
    wants_results = len(inspect.signature(get_study).parameters) >= 2
    study = get_study(arg or None, Results(workdir)) if wants_results else get_study(arg or None)
    if not isinstance(study, Study):
        study = Study(runs=list(study))
    check_runs(study.runs)
    return study
