"""A study's table, from its runs' own files: `DIR/table.md`, `DIR/table.csv` and a W&B Table.

One row per run, in the study's order: `run`, `status`, the run's tags, the result columns of
`records.RESULT_COLUMNS` (top-1 in %), the columns the study derives (deltas, published values),
and `error` for a failed run. table.csv has every column; table.md the ones the study chose.
The same files give the same bytes, so a re-run that trained nothing rewrites the same table.
"""

import csv
import io
import os
import uuid
from collections.abc import Sequence
from typing import Any

from jaxconv.study import records
from jaxconv.study.spec import Study


def build_rows(study: Study, workdir: str) -> list[dict[str, Any]]:
    rows = []
    for run in study.runs:
        run_dir = os.path.join(workdir, run.name)
        status = records.run_status(run_dir)
        summary = records.read_summary(run_dir) if status.state == 'done' else None
        results = records.results_of(summary) if summary else dict.fromkeys(records.RESULT_COLUMNS)
        # Measured values win over a tag of the same name (a planned resolution, say).
        rows.append({'run': run.name, 'status': status.state, **run.tags, **results,
                     'error': status.error})
    if study.derive is not None:
        study.derive(rows)
    return rows


def all_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """run, status, tags and derived columns in order of appearance, results, error last."""
    columns = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    fixed = ('run', 'status', *records.RESULT_COLUMNS, 'error')
    middle = [key for key in columns if key not in fixed]
    return ['run', 'status', *middle, *records.RESULT_COLUMNS, 'error']


def default_columns(study: Study, rows: Sequence[dict[str, Any]]) -> list[str]:
    if study.columns:
        return ['run', 'status', *study.columns]
    tags = [key for key in all_columns(rows) if key not in records.RESULT_COLUMNS
            and key not in ('run', 'status', 'error')]
    return ['run', 'status', *tags, 'top1', 'top1_weights', 'macs', 'params', 'img_per_sec']


def _engineering(value: float) -> str:
    for divisor, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if abs(value) >= divisor:
            return f'{value / divisor:.3g}{suffix}'
    return f'{value:.3g}'


def format_cell(column: str, value: Any) -> str:
    """Deltas signed, top-1 with two decimals, counts in k/M/G."""
    if value is None or value == '':
        return ''
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value).replace('|', '\\|')
    if 'delta' in column:
        return f'{value:+.2f}'
    if column.endswith('top1'):
        return f'{value:.2f}'
    if column.endswith('macs') or column == 'params':  # macs, predicted_macs, ...
        return _engineering(value)
    if column in ('img_per_sec', 'wall_seconds'):
        return f'{value:.0f}'
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str], caption: str = '') -> str:
    lines = ['| ' + ' | '.join(columns) + ' |',
             '|' + '|'.join('---' if column in ('run', 'status') else '---:'
                            for column in columns) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(format_cell(c, row.get(c)) for c in columns) + ' |')
    if caption:
        lines += ['', caption]
    failed = [row for row in rows if row['status'] == 'failed']
    if failed:
        lines += ['', 'Failed runs (their logs hold the rest):']
        lines += [f'- {row["run"]}: {row["error"]}' for row in failed]
    return '\n'.join(lines) + '\n'


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({column: '' if row.get(column) is None else row[column]
                         for column in columns})
    return out.getvalue()


def _write_text(path: str, text: str) -> None:
    temporary = f'{path}.tmp{os.getpid()}'
    with open(temporary, 'w') as f:
        f.write(text)
    os.replace(temporary, path)  # Agents that finish together never leave half a table.


def write_tables(study: Study, workdir: str) -> tuple[list[dict[str, Any]], str]:
    """Writes table.md and table.csv; returns the rows and the markdown."""
    rows = build_rows(study, workdir)
    table = markdown(rows, default_columns(study, rows), study.caption)
    os.makedirs(workdir, exist_ok=True)
    _write_text(os.path.join(workdir, 'table.md'), table)
    _write_text(os.path.join(workdir, 'table.csv'), to_csv(rows, all_columns(rows)))
    return rows, table


def _wandb_settings(study: Study, workdir: str) -> dict | None:
    """The W&B project, entity and mode the runs logged with (from a finished run's config)."""
    for run in study.runs:
        summary = records.read_summary(os.path.join(workdir, run.name))
        if summary and 'config' in summary:
            return summary['config']['wandb']
    return None


def log_wandb_table(study: Study, rows: Sequence[dict[str, Any]], workdir: str,
                    group: str) -> str | None:
    """Logs the table as a W&B Table in the study's group, in one W&B run (`GROUP/table`) that
    every later `table` call resumes; returns the mode used, or None when W&B is off."""
    settings = _wandb_settings(study, workdir)
    if settings is None:
        return None
    from jaxconv.train.writer import resolve_wandb_mode

    mode = resolve_wandb_mode(settings['mode'])
    if mode == 'disabled':
        return None
    import wandb

    id_path = os.path.join(workdir, 'wandb_table_run_id')
    if not os.path.exists(id_path):
        _write_text(id_path, uuid.uuid4().hex[:12])
    with open(id_path) as f:
        run_id = f.read().strip()
    columns = all_columns(rows)
    run = wandb.init(project=settings['project'], entity=settings['entity'] or None,
                     group=group, name=f'{group}/table', job_type='study_table', dir=workdir,
                     mode=mode, id=run_id, resume='allow')
    try:
        run.log({'study_table': wandb.Table(
            columns=columns, data=[[row.get(column) for column in columns] for row in rows])})
    finally:
        run.finish()
    return mode
