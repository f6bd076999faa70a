"""A study's figures, drawn from its table rows: each a PNG with the plotted data beside it as CSV.

- `ladder.png`: Δ top-1 of each rung over the previous one, ours beside the published Δ (the
  reading of an additive table such as ResNet-RS Table 1).
- `top1_vs_macs.png` and `top1_vs_step_time.png`: accuracy against multiply-adds and against train
  step time, one curve per value of the study's `group_by` tag (the speed-accuracy view of
  ResNet-RS Figure 1 and EfficientNet Figure 1).
"""

import csv
import math
import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use('Agg')  # Files only; no display on a cluster node.
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from jaxconv.study.spec import Study  # noqa: E402

FIGURE_INCHES, DPI = (9.0, 4.5), 100  # Every figure is 900 x 450 pixels.


def _write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(header)
        writer.writerows([['' if v is None else v for v in row] for row in rows])


def _save(figure, path: str) -> None:
    figure.savefig(path, dpi=DPI)  # No bbox 'tight': the pixel size stays what FIGURE_INCHES says.
    plt.close(figure)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def ladder_plot(rows: Sequence[dict[str, Any]], path: str) -> str:
    """Bars of Δ top-1 per rung (columns `delta` and `published_delta`), ours beside published."""
    rungs = rows[1:]  # The baseline has no previous rung.
    ours = [_number(row.get('delta')) for row in rungs]
    published = [_number(row.get('published_delta')) for row in rungs]
    figure, axes = plt.subplots(figsize=FIGURE_INCHES, layout='constrained')
    positions = range(len(rungs))
    width = 0.38
    for offset, values, label, colour in ((-width / 2, ours, 'this study', 'tab:blue'),
                                          (width / 2, published, 'published', 'tab:gray')):
        bars = axes.bar([p + offset for p in positions], values, width, label=label, color=colour)
        # Values on the bars: a smoke study's deltas dwarf the published ones.
        axes.bar_label(bars, labels=['' if math.isnan(v) else f'{v:+.1f}' for v in values],
                       fontsize=7, padding=2)
    for position, value, row in zip(positions, ours, rungs, strict=True):
        if math.isnan(value):
            axes.annotate(row['status'], (position - width / 2, 0), ha='center', va='bottom',
                          fontsize=7, rotation=90, color='tab:red')
    axes.axhline(0, color='black', linewidth=0.8)
    axes.set_xticks(list(positions), [row['run'] for row in rungs], rotation=30, ha='right')
    axes.set_ylabel('Δ top-1 over the previous rung (points)')
    axes.set_title('Each rung\'s change in top-1 (EMA weights where EMA is on)')
    axes.legend()
    axes.grid(axis='y', alpha=0.3)
    _save(figure, path)
    _write_csv(os.path.splitext(path)[0] + '.csv', ('rung', 'delta', 'published_delta'),
               [(row['run'], row.get('delta'), row.get('published_delta')) for row in rungs])
    return path


def cost_plot(rows: Sequence[dict[str, Any]], x: str, metric: str, group_by: str | None,
              path: str, x_label: str) -> str | None:
    """`metric` against column `x` for the finished runs, one curve per `group_by` value."""
    points = [row for row in rows if row.get(x) is not None and row.get(metric) is not None]
    if not points:
        return None
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in points:
        groups.setdefault(row.get(group_by) if group_by else 'runs', []).append(row)
    figure, axes = plt.subplots(figsize=FIGURE_INCHES, layout='constrained')
    for group, members in groups.items():
        members = sorted(members, key=lambda row: row[x])
        # A curve joins the points of one group (a scaling strategy); ungrouped runs (a ladder's
        # rungs) are separate recipes, so they stay unjoined.
        axes.plot([row[x] for row in members], [row[metric] for row in members], marker='o',
                  linestyle='-' if group_by else 'none',
                  label=f'{group_by}={group}' if group_by else None)
        for row in members:
            axes.annotate(row['run'], (row[x], row[metric]), fontsize=7,
                          xytext=(3, 3), textcoords='offset points')
    if max(row[x] for row in points) > 10 * min(row[x] for row in points) > 0:
        axes.set_xscale('log')
    axes.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())  # 1.2M, not 1.2 x 1e6.
    axes.set_xlabel(x_label)
    axes.set_ylabel(f'{metric} (%)')
    axes.grid(alpha=0.3)
    if group_by:
        axes.legend()
    _save(figure, path)
    _write_csv(os.path.splitext(path)[0] + '.csv',
               ('run', group_by or 'group', x, metric),
               [(row['run'], row.get(group_by) if group_by else '', row[x], row[metric])
                for row in points])
    return path


def _groups_of(row: dict[str, Any], column: str) -> list[str]:
    """A row's values of `column`: one run may sit on several curves ('compound+depth')."""
    value = row.get(column)
    return [] if value in (None, '') else str(value).split('+')


def curves_plot(rows: Sequence[dict[str, Any]], path: str, *, x: str, metric: str, curve_by: str,
                panel_by: str | None = None, x_label: str = '', title: str = '',
                shared: str | None = None, curves: Sequence[str] | None = None,
                label: str | None = 'run') -> str | None:
    """`metric` against `x`, one curve per value of `curve_by` and one panel per value of
    `panel_by`. A row whose `curve_by` is 'a+b' sits on both curves; a row whose `curve_by` is
    `shared` (the unscaled base network) starts every curve of its panel. The figure of
    EfficientNet Figures 3 and 8 and ResNet-RS Figures 2 and 3. `curves`: the curves to draw,
    in legend order (default: every value found); `label`: the column that names each point, or
    None for no names."""
    points = [row for row in rows if row.get(x) is not None and row.get(metric) is not None]
    if not points:
        return None
    panels = list(dict.fromkeys(row.get(panel_by) for row in points)) if panel_by else [None]
    figure, all_axes = plt.subplots(1, len(panels), figsize=FIGURE_INCHES, layout='constrained',
                                    squeeze=False, sharey=True)
    found = {group for row in points for group in _groups_of(row, curve_by) if group != shared}
    curves = [curve for curve in curves if curve in found] if curves else sorted(found)
    # Two strategies may reach the same networks (compound with a depth-only winner): each curve
    # its own line style and marker size, so one never hides another.
    styles = {curve: dict(color=f'C{index}', linestyle=('-', '--', '-.', ':')[index % 4],
                          markersize=9 - 2 * (index % 3), marker='osD^v'[index % 5])
              for index, curve in enumerate(curves)}
    csv_rows = []
    for axes, panel in zip(all_axes[0], panels, strict=True):
        members = [row for row in points if not panel_by or row.get(panel_by) == panel]
        base = [row for row in members if shared in _groups_of(row, curve_by)]
        for curve in curves:
            line = sorted(base + [row for row in members if curve in _groups_of(row, curve_by)],
                          key=lambda row: row[x])
            if not line:
                continue
            axes.plot([row[x] for row in line], [row[metric] for row in line],
                      label=curve, alpha=0.85, **styles[curve])
            csv_rows += [(row['run'], panel, curve, row[x], row[metric]) for row in line]
        others = [row for row in members if not set(_groups_of(row, curve_by)) & {*curves,
                                                                                   shared}]
        if others:  # Runs on no curve (a search's losing candidates): grey, unjoined.
            axes.plot([row[x] for row in others], [row[metric] for row in others], 'x',
                      color='grey', label='other runs')
            csv_rows += [(row['run'], panel, row.get(curve_by), row[x], row[metric])
                         for row in others]
        for row in members if label else ():
            axes.annotate(str(row.get(label)), (row[x], row[metric]), fontsize=6, xytext=(3, 3),
                          textcoords='offset points', alpha=0.7)
        axes.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())
        axes.set_xlabel(x_label or x)
        axes.grid(alpha=0.3)
        if panel_by:
            axes.set_title(f'{panel_by}={panel}')
        axes.legend(fontsize=8)
    all_axes[0][0].set_ylabel(f'{metric} (%)')
    if title:
        figure.suptitle(title)
    _save(figure, path)
    _write_csv(os.path.splitext(path)[0] + '.csv', ('run', panel_by or 'panel', curve_by, x,
                                                    metric), csv_rows)
    return path


def scatter_panels(rows: Sequence[dict[str, Any]], path: str, *, x: str, y: str, colour: str,
                   panel_by: str, log: bool = True, title: str = '') -> str | None:
    """Points (`x`, `y`) coloured by `colour`, one panel per value of `panel_by` (a search's
    rounds and its grid), one colour scale shared by all panels."""
    points = [row for row in rows if row.get(x) is not None and row.get(y) is not None]
    if not points:
        return None
    panels = list(dict.fromkeys(row.get(panel_by) for row in points))
    values = [row[colour] for row in points if row.get(colour) is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    figure, all_axes = plt.subplots(1, len(panels), figsize=FIGURE_INCHES, layout='constrained',
                                    squeeze=False, sharex=True, sharey=True)
    mappable = None
    for axes, panel in zip(all_axes[0], panels, strict=True):
        members = [row for row in points if row.get(panel_by) == panel]
        scored = [row for row in members if row.get(colour) is not None]
        unscored = [row for row in members if row.get(colour) is None]
        if scored:
            mappable = axes.scatter([row[x] for row in scored], [row[y] for row in scored],
                                    c=[row[colour] for row in scored], cmap='viridis',
                                    vmin=low, vmax=high, s=40, edgecolors='black')
        if unscored:  # Failed or stopped early: shown, uncoloured.
            axes.scatter([row[x] for row in unscored], [row[y] for row in unscored],
                         marker='x', color='tab:red', label='no score')
            axes.legend(fontsize=7)
        if log:
            axes.set_xscale('log')
            axes.set_yscale('log')
        axes.set_title(f'{panel_by}={panel}', fontsize=9)
        axes.set_xlabel(x, fontsize=8)
        axes.grid(alpha=0.3)
    all_axes[0][0].set_ylabel(y, fontsize=8)
    if mappable is not None:
        figure.colorbar(mappable, ax=all_axes[0].tolist(), label=f'{colour} (%)')
    if title:
        figure.suptitle(title)
    _save(figure, path)
    _write_csv(os.path.splitext(path)[0] + '.csv', ('run', panel_by, x, y, colour),
               [(row['run'], row.get(panel_by), row[x], row[y], row.get(colour))
                for row in points])
    return path


def write_plots(study: Study, rows: Sequence[dict[str, Any]], workdir: str) -> list[str]:
    """Draws the study's figures into `workdir`; returns the PNG paths written. An entry of
    `study.plots` may also be a function (rows, workdir) -> PNG paths, for a study's own figure."""
    written = []
    for plot in study.plots:
        if callable(plot):
            written += [path for path in plot(rows, workdir) if path]
    if 'ladder' in study.plots and len(rows) > 1:
        written.append(ladder_plot(rows, os.path.join(workdir, 'ladder.png')))
    if 'cost' in study.plots:
        for x, name, label in (
                ('macs', 'top1_vs_macs', 'multiply-adds per image at the train resolution'),
                ('ms_per_step', 'top1_vs_step_time', 'train step time (ms, mean after compile)')):
            path = cost_plot(rows, x, study.metric, study.group_by,
                             os.path.join(workdir, f'{name}.png'), label)
            if path:
                written.append(path)
    return written
