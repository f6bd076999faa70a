"""Random search and coarse-to-fine narrowing over config keys (Bergstra & Bengio 2012, "Random
Search for Hyper-Parameter Optimization"; CS231n's "coarse to fine" practice).

A search space maps dotted config keys to distributions:

  space = {'optim.base_lr': loguniform(1e-4, 1.0),       # lr = 10**uniform(-4, 0)
           'optim.weight_decay': loguniform(1e-6, 1e-2),
           'train.label_smoothing': uniform(0.0, 0.2),
           'model.kwargs.se_ratio': choice([0.0, 0.25])}
  trials = sample(space, 8, seed=0)            # 8 dicts; the same seed gives the same 8
  finer = narrow(space, trials, scores, top_k=3)  # each range -> the span of the 3 best trials
  grid = grid_points(space, 8)                 # a grid of (at most) the same budget

Every function is pure: the same arguments give the same trials, so a re-run of a study maps each
trial onto the same run directory.
"""

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A value drawn uniformly from [low, high]."""

    low: float
    high: float

    def __post_init__(self):
        if not self.low <= self.high:
            raise ValueError(f'uniform({self.low}, {self.high}): low must not exceed high')

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def span(self, values: Sequence[float]) -> 'Uniform':
        return Uniform(min(values), max(values))

    def grid(self, n: int) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, n)] if n > 1 else [
            (self.low + self.high) / 2]


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A value whose logarithm is uniform: 10**uniform(log10 low, log10 high)."""

    low: float
    high: float

    def __post_init__(self):
        if not 0 < self.low <= self.high:
            raise ValueError(f'loguniform({self.low}, {self.high}) needs 0 < low <= high')

    def draw(self, rng: np.random.Generator) -> float:
        return float(10 ** rng.uniform(math.log10(self.low), math.log10(self.high)))

    def span(self, values: Sequence[float]) -> 'LogUniform':
        return LogUniform(min(values), max(values))

    def grid(self, n: int) -> list[float]:
        if n == 1:
            return [math.sqrt(self.low * self.high)]
        return [float(v) for v in np.geomspace(self.low, self.high, n)]


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `options`, each equally likely."""

    options: tuple

    def __post_init__(self):
        if not self.options:
            raise ValueError('choice([]) has nothing to choose from; give at least one option')

    def draw(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def span(self, values: Sequence[Any]) -> 'Choice':
        # The options the best trials used, in their original order.
        return Choice(tuple(option for option in self.options if option in values))

    def grid(self, n: int) -> list[Any]:
        return list(self.options[:n])


Distribution = Uniform | LogUniform | Choice


def uniform(low: float, high: float) -> Uniform:
    return Uniform(float(low), float(high))


def loguniform(low: float, high: float) -> LogUniform:
    return LogUniform(float(low), float(high))


def choice(options: Sequence[Any]) -> Choice:
    return Choice(tuple(options))


def sample(space: Mapping[str, Distribution], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` trials, each a dict key -> value; keys drawn in the space's order from one seeded
    stream, so the same (space, n, seed) always gives the same trials."""
    rng = np.random.default_rng(seed)
    return [{key: distribution.draw(rng) for key, distribution in space.items()}
            for _ in range(n)]


def top_k(trials: Sequence[Mapping[str, Any]], scores: Sequence[float | None],
          k: int) -> list[Mapping[str, Any]]:
    """The `k` trials with the highest scores (ties: the earlier trial first); unscored trials
    (failed runs) never count."""
    if k < 1:
        raise ValueError(f'top_k needs k >= 1, got {k}')
    scored = [(-score, index) for index, score in enumerate(scores) if score is not None]
    if not scored:
        raise ValueError('no trial has a score yet; narrow needs finished trials')
    return [trials[index] for _, index in sorted(scored)[:k]]


def narrow(space: Mapping[str, Distribution], trials: Sequence[Mapping[str, Any]],
           scores: Sequence[float | None], k: int) -> dict[str, Distribution]:
    """Coarse to fine: each range shrinks to the span of the `k` best trials' values (a choice to
    the options they used), the kind of distribution kept (log-uniform stays log-uniform)."""
    best = top_k(trials, scores, k)
    return {key: distribution.span([trial[key] for trial in best])
            for key, distribution in space.items()}


def grid_points(space: Mapping[str, Distribution], budget: int) -> list[dict[str, Any]]:
    """The largest grid with the same number of values per key and at most `budget` points:
    evenly spaced values (log-spaced for log-uniform keys) spanning each range, ends included."""
    per_key = max(1, int(math.floor(budget ** (1 / len(space)) + 1e-9)))
    axes = [distribution.grid(per_key) for distribution in space.values()]
    return [dict(zip(space, values, strict=True)) for values in itertools.product(*axes)]


def describe(space: Mapping[str, Distribution]) -> dict[str, str]:
    """One line per key, for tables and logs: 'loguniform(0.001, 1)'."""
    lines = {}
    for key, distribution in space.items():
        if isinstance(distribution, Choice):
            lines[key] = f'choice({list(distribution.options)})'
        else:
            kind = 'loguniform' if isinstance(distribution, LogUniform) else 'uniform'
            lines[key] = f'{kind}({distribution.low:.4g}, {distribution.high:.4g})'
    return lines
