"""Grids as one expression: lists of points, each point a dict, in the spirit of big_vision's
`get_hyper` (`hyper.sweep`, `hyper.product`, `hyper.zipit`, `hyper.chain`).

A key that starts with `config.` is a config override (`config.optim.base_lr` becomes
`--config.optim.base_lr=...`); any other key is a tag that names the point in tables and plots.

  product(sweep('config.optim.base_lr', [0.1, 0.4]), sweep('depth', [18, 34]))
  -> [{'config.optim.base_lr': 0.1, 'depth': 18}, {... 0.1, 34}, {... 0.4, 18}, {... 0.4, 34}]

The order is part of the result: the same expression always lists the same points in the same
order, so a re-run of a study maps each point onto the same workdir.
"""

import builtins
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

Point = dict[str, Any]


def sweep(key: str, values: Iterable[Any]) -> list[Point]:
    """One point per value of `key`."""
    return [{key: value} for value in values]


def fixed(key: str, value: Any) -> list[Point]:
    """A one-point grid: `key` set to `value` wherever it is combined."""
    return [{key: value}]


def _merge(points: Sequence[Point]) -> Point:
    merged: Point = {}
    for point in points:
        repeated = merged.keys() & point.keys()
        if repeated:
            raise ValueError(f'grid combines two values for {", ".join(sorted(repeated))}; '
                             'each key may come from one factor only')
        merged.update(point)
    return merged


def product(*grids: Sequence[Point]) -> list[Point]:
    """Every combination, the last grid varying fastest (like itertools.product)."""
    return [_merge(points) for points in itertools.product(*grids)]


def zip(*grids: Sequence[Point]) -> list[Point]:  # noqa: A001  (the name big_vision's users know)
    """The i-th points of all grids merged; the grids must have the same length."""
    lengths = {len(grid) for grid in grids}
    if len(lengths) > 1:
        raise ValueError(f'zip needs grids of one length, got lengths {sorted(lengths)}')
    return [_merge(points) for points in builtins.zip(*grids, strict=True)]


def chain(*grids: Sequence[Point]) -> list[Point]:
    """The grids one after another (e.g. a baseline point, then a sweep)."""
    return [dict(point) for grid in grids for point in grid]
